"""The release's build step in the cluster (issue 14): build1 clones the example app from the
master's git server (git://<master>/hello.git, states/git_server), builds the commit on the node
image and pushes `<VIP>:5000/saltyard/hello:<full sha>` through the LVS director; the same sha
again is reused, never rebuilt. The git server is read-only."""

from __future__ import annotations

import json

import pytest

from saltyard.localcluster.cluster import RELEASE_BASE

pytestmark = pytest.mark.cluster

REPOSITORY = "saltyard/hello"


@pytest.fixture(scope="module")
def build(cluster) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("build"))


@pytest.fixture(scope="module")
def git_url(cluster) -> str:
    return f"git://{cluster.inventory.master.address}/hello.git"


@pytest.fixture(scope="module")
def base_image(cluster, converged, build) -> str:
    ref = cluster.push_node_image(RELEASE_BASE)
    # Gone from build1's engine again (the push loaded it there): the build pulls its base
    # from the registry, as on a real build node.
    cluster.exec(build, ["docker", "rmi", ref])
    return ref


def served_main(cluster, node: str, git_url: str) -> str:
    _, out = cluster.exec(node, ["git", "ls-remote", git_url, "refs/heads/main"])
    sha, ref = out.split()
    assert ref == "refs/heads/main", out
    return sha


def test_the_git_server_serves_the_example_app_read_only(cluster, converged, build, git_url):
    master = cluster.inventory.master.name
    served = served_main(cluster, build, git_url)
    _, on_master = cluster.exec(
        master,
        ["runuser", "-u", "git", "--", "git", "--git-dir=/srv/git/hello.git", "rev-parse", "main"],
    )
    assert served == on_master.strip()
    # The first commit holds the example app.
    _, files = cluster.exec(
        build,
        ["sh", "-c", f"d=$(mktemp -d) && git clone -q {git_url} $d && git -C $d ls-files"],
    )
    assert {"app.py", "release.json", "Dockerfile"} <= set(files.split()), files
    # A push over git:// is refused, and main stays where it was.
    code, out = cluster.exec(
        build,
        [
            "sh",
            "-c",
            f"d=$(mktemp -d) && git clone -q {git_url} $d && cd $d && "
            "git -c user.name=t -c user.email=t@t commit -q --allow-empty -m push-test && "
            "git push origin HEAD:main",
        ],
        check=False,
    )
    assert code != 0, out
    assert served_main(cluster, build, git_url) == served


def test_build1_builds_a_ref_once_and_reuses_it(cluster, converged, build, git_url, base_image):
    sha = served_main(cluster, build, git_url)
    built = cluster.salt([build], "release_build.image", git_url, "main", REPOSITORY, base_image)
    built = built[build]
    assert isinstance(built, dict), built  # an error comes back as a string
    vip = cluster.pillar(build, "registry:vip:address")
    assert built["sha"] == sha
    assert built["image"] == f"{vip}:5000/{REPOSITORY}:{sha}"
    assert cluster.salt([build], "registry.digest", REPOSITORY, sha)[build] == built["digest"]
    if not built["reused"]:  # (a reused cluster may have it from an earlier session)
        assert any("pulling the base image" in line for line in built["progress"]), built
    # The image is the example app of that commit.
    _, text = cluster.exec(
        build, ["docker", "run", "--rm", built["image"], "cat", "/srv/hello/release.json"]
    )
    assert "version" in json.loads(text), text

    again = cluster.salt([build], "release_build.image", git_url, sha, REPOSITORY, base_image)
    again = again[build]
    assert isinstance(again, dict), again
    assert again["reused"] is True, again
    assert (again["sha"], again["digest"]) == (sha, built["digest"])


def test_a_ref_the_repository_lacks_is_refused_by_name(
    cluster, converged, build, git_url, base_image
):
    refused = cluster.salt(
        [build], "release_build.image", git_url, "no-such-branch", REPOSITORY, base_image
    )[build]
    assert isinstance(refused, str), refused
    assert "'no-such-branch'" in refused and git_url in refused, refused
