"""The release's build step (saltyard/release/build.py) with real parts: a git repository of the
example app made here, the host's Docker engine (the node image as the base) and the suite's
registry on loopback (TLS, htpasswd; the engine treats 127.0.0.0/8 as an insecure registry)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import docker.errors
import pytest

from saltyard.clients import registry as rc
from saltyard.release.build import BuildError, build
from tests.support.components import require_program

APP = Path(__file__).resolve().parents[2] / "examples" / "apps" / "hello"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def app_repo(tmp_path_factory) -> Path:
    """The example app as a git repository: main at 1.0.0, branch next at 1.1.0, and branch
    broken whose Dockerfile fails."""
    require_program("git", "git")
    repo = tmp_path_factory.mktemp("hello-git")
    for name in ("app.py", "release.json", "Dockerfile"):
        shutil.copy(APP / name, repo / name)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "test@saltyard.test")
    git(repo, "config", "user.name", "saltyard test")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "hello 1.0.0")
    git(repo, "checkout", "--quiet", "-b", "next")
    data = json.loads((repo / "release.json").read_text()) | {"version": "1.1.0"}
    (repo / "release.json").write_text(json.dumps(data))
    git(repo, "commit", "--quiet", "-am", "hello 1.1.0")
    git(repo, "checkout", "--quiet", "-b", "broken")
    with open(repo / "Dockerfile", "a") as dockerfile:
        dockerfile.write("RUN echo this step fails on purpose && false\n")
    git(repo, "commit", "--quiet", "-am", "a build that fails")
    git(repo, "checkout", "--quiet", "main")
    return repo


@pytest.fixture
def run_build(registry, docker_client, task_image):
    client = rc.RegistryClient(
        registry.url,
        username=registry.username,
        password=registry.password,
        ca_file=str(registry.ca_file),
    )
    lines: list[str] = []

    def run(app_repo: Path, ref: str, repository: str = "release-test/hello"):
        return build(
            git_url=str(app_repo),
            ref=ref,
            repository=repository,
            registry_host=registry.host,
            registry=client,
            engine=docker_client,
            base_image=task_image,
            auth={"username": registry.username, "password": registry.password},
            progress=lines.append,
        )

    run.client = client
    run.lines = lines
    return run


def version_in(docker_client, image: str) -> str:
    out = docker_client.containers.run(
        image,
        [
            "python3",
            "-c",
            "import json; print(json.load(open('/srv/hello/release.json'))['version'])",
        ],
        remove=True,
    )
    return out.decode().strip()


def test_a_ref_is_built_pushed_by_sha_and_never_rebuilt(run_build, app_repo, docker_client):
    sha = git(app_repo, "rev-parse", "next")
    built = run_build(app_repo, "next")
    assert built.sha == sha and not built.reused
    assert built.image.endswith(f"/release-test/hello:{sha}")
    assert built.digest == run_build.client.manifest_digest("release-test/hello", sha)
    assert version_in(docker_client, built.image) == "1.1.0"
    labels = docker_client.images.get(built.image).labels
    assert labels["org.opencontainers.image.revision"] == sha

    # The same sha again (by its sha this time): the registry's image, nothing built. The
    # local copy is gone first, so a rebuild would bring it back.
    docker_client.images.remove(built.image, noprune=False)
    again = run_build(app_repo, sha)
    assert again.reused and again.digest == built.digest
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(built.image)
    assert any("reused, not rebuilt" in line for line in run_build.lines)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such-branch", "ref 'no-such-branch' does not exist in "),
        ("0" * 40, f"ref '{'0' * 40}' does not exist in "),
        ("--upload-pack=touch /tmp/x", "ref '--upload-pack=touch /tmp/x' is not a branch, tag or"),
        ("", "ref '' is not a branch"),
    ],
)
def test_a_bad_ref_is_refused_by_name(run_build, app_repo, ref, message):
    with pytest.raises(BuildError, match="^" + re.escape(message)):
        run_build(app_repo, ref)


def test_a_repository_that_cannot_be_cloned_is_named(run_build, tmp_path):
    with pytest.raises(BuildError, match=f"cannot clone {tmp_path / 'absent'}"):
        run_build(tmp_path / "absent", "main")


def test_a_failing_build_quotes_its_log_and_pushes_nothing(run_build, app_repo):
    sha = git(app_repo, "rev-parse", "broken")
    with pytest.raises(BuildError) as failed:
        run_build(app_repo, "broken", repository="release-test/broken")
    message = str(failed.value)
    assert f"docker build of {app_repo} at {sha} failed" in message
    assert "this step fails on purpose" in message
    assert not run_build.client.exists("release-test/broken", sha)
