"""The tinyweb task image (tests/support/tinyweb) on the host's Docker engine: small, serving
on the port Marathon gives it, and draining on SIGTERM the way docs/lb.md asks of a task."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import docker
import pytest
import requests

from tests.support import tinyweb
from tests.support.components import require
from tests.support.wait import wait_until

# Connections that docker-proxy accepts before the server listens are reset: "not yet".
NOT_YET = (requests.ConnectionError, requests.Timeout)


@pytest.fixture(scope="module")
def image(docker_client) -> str:
    try:
        return tinyweb.image(docker_client)
    except tinyweb.GoMissing as exc:
        require("go", f"{exc}; run scripts/host-setup.sh")


@pytest.fixture
def run(docker_client, image) -> Iterator:
    """Start tinyweb containers (PORT0=8080, published on a random port of 127.0.0.1); each is
    removed when the test ends, also one that already exited."""
    started = []

    def start(**environment: str):
        container = docker_client.containers.run(
            image,
            name=f"tinyweb-test-{uuid.uuid4().hex[:8]}",
            environment={"PORT0": "8080", **environment},
            ports={"8080/tcp": ("127.0.0.1", None)},
            detach=True,
        )
        started.append(container)
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        container.url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: get(container.url, "/health").status_code == 200,
            15,
            message=f"tinyweb in {container.name} answers /health",
            ignore=NOT_YET,
        )
        return container

    yield start
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def get(url: str, path: str) -> requests.Response:
    return requests.get(url + path, timeout=2)


def test_the_image_is_small(docker_client, image):
    size = docker_client.images.get(image).attrs["Size"]
    assert size < 15 * 1024 * 1024, f"{image} is {size / 1e6:.1f} MB"


def test_it_answers_with_its_text_and_health(run):
    container = run(TINYWEB_TEXT="blue-1")
    answer = get(container.url, "/")
    assert (answer.status_code, answer.text) == (200, "tinyweb blue-1\n")
    assert get(container.url, "/any/other/path").text == "tinyweb blue-1\n"
    health = get(container.url, "/health")
    assert (health.status_code, health.text) == (200, "ok")
    assert "listening on" in container.logs().decode()


def test_without_text_it_answers_with_its_hostname(run):
    container = run()
    container.reload()
    hostname = container.attrs["Config"]["Hostname"]
    assert get(container.url, "/").text == f"tinyweb {hostname}\n"


def test_on_sigterm_it_fails_health_keeps_serving_through_the_drain_then_exits_0(run):
    drain = 2.0
    container = run(TINYWEB_TEXT="draining-1", TINYWEB_DRAIN_SECONDS=str(drain))
    container.kill(signal="SIGTERM")
    killed = time.monotonic()

    # Not the Response itself: one with an error status is false.
    text = wait_until(
        lambda: (r := get(container.url, "/health")).status_code == 503 and r.text,
        drain,
        0.1,
        "/health to answer 503 after SIGTERM",
    )
    assert text == "draining"
    # New requests, each on a connection of its own, are still answered in the drain.
    answer = get(container.url, "/")
    assert (answer.status_code, answer.text) == (200, "tinyweb draining-1\n")
    assert time.monotonic() - killed < drain, "the checks took longer than the drain"

    status = container.wait(timeout=drain + 10)
    stopped = time.monotonic() - killed
    logs = container.logs().decode()
    assert status["StatusCode"] == 0, logs
    # Not before the drain was over (a little slack for the signal's way into the container).
    assert stopped >= drain - 0.2, f"exited {stopped:.1f} s after SIGTERM\n{logs}"
    lines = logs.splitlines()
    assert [line.split()[1] for line in lines] == ["listening", "draining", "stopped"], logs


def test_a_second_call_finds_the_image_and_builds_nothing(docker_client, image, monkeypatch):
    before = docker_client.images.get(image).id

    def no_build(*args):
        raise AssertionError("image() built the image again")

    monkeypatch.setattr(tinyweb, "_build", no_build)
    assert tinyweb.image(docker_client) == image
    assert docker_client.images.get(image).id == before


def test_a_failed_go_build_raises_with_gos_output(docker_client, tmp_path, monkeypatch):
    (tmp_path / "go.mod").write_text("module saltyard.test/broken\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text("package main\n\nfunc main() { undefinedName() }\n")
    monkeypatch.setattr(tinyweb, "SOURCE", tmp_path)
    with pytest.raises(RuntimeError, match="undefinedName") as failed:
        tinyweb.image(docker_client)
    assert not isinstance(failed.value, tinyweb.GoMissing)


def test_without_go_it_says_so(docker_client, tmp_path, monkeypatch):
    # Inputs of their own, so no image with this tag exists and a build is attempted.
    (tmp_path / "go.mod").write_text("module saltyard.test/nogo\n")
    (tmp_path / "main.go").write_text(f"package main // {uuid.uuid4()}\n")
    monkeypatch.setattr(tinyweb, "SOURCE", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tinyweb.GoMissing, match="go is not installed"):
        tinyweb.image(docker_client)
