"""The git server (states/git_server), rendered by Salt on the host for the master of the shipped
inventory with the local site's pillar: the example app's repository, seeded once from
examples/apps/hello, served read-only by `git daemon` on the master's own address; bad values
refused before any state exists, each named. The served repository itself (a clone from build1)
is checked in the cluster (tests/convergence/test_build_node.py)."""

from __future__ import annotations

import pytest

from tests.state_render import RenderRefused, StateRenderer, state_args


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    return StateRenderer(tmp_path_factory.mktemp("render-git-server"), "master")


def test_the_example_repository_is_seeded_once_and_served_read_only(master):
    rendered = master.show_sls("git_server")
    seed = state_args(rendered, "git-server-seed-hello")
    assert seed["source"] == "salt://examples/apps/hello"
    repository = state_args(rendered, "git-server-repository-hello")
    # Only while the repository has no commit on main: a pushed version is never overwritten.
    assert repository["unless"] == (
        "git --git-dir=/srv/git/hello.git rev-parse --verify --quiet refs/heads/main"
    )
    assert repository["runas"] == "git"
    assert "git-daemon-export-ok" in repository["name"]
    unit = state_args(rendered, "git-server-unit")["contents"]
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    # The master's inventory address, no --export-all and no receive-pack: read-only, and only
    # the repositories that carry git-daemon-export-ok.
    assert "--listen=172.30.0.10 --port=9418" in exec_start
    assert "--export-all" not in exec_start and "receive-pack" not in exec_start


@pytest.mark.parametrize(
    ("pillar", "named"),
    [
        ({"git_server": {"port": 70000}}, "pillar git_server:port 70000"),
        ({"git_server": {"base_path": "srv/git"}}, 'pillar git_server:base_path "srv/git"'),
        ({"git_server": {"repositories": {"Hello World": {"seed": "x"}}}}, '"Hello World"'),
        ({"git_server": {"repositories": {"other": {}}}}, "git_server:repositories:other:seed"),
        ({"git_server": {"portt": 1}}, "pillar git_server:portt is not a known key"),
    ],
)
def test_bad_values_are_refused_by_name(master, pillar, named):
    with pytest.raises(RenderRefused) as refused:
        master.show_sls("git_server", pillar=pillar)
    assert named in str(refused.value), str(refused.value)
