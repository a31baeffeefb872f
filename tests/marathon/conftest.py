"""Fixtures for the Marathon emulator suite: a task image, emulator subprocesses on 127.0.0.1,
and cleanup of every container the suite created (by label), even on failure.

Two agents point at the host's Docker engine with different attributes and port ranges; published
ports bind to 127.0.0.1 only, so health checks and tests talk to loopback.
"""

from __future__ import annotations

import collections
import collections.abc
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

# marathon==0.13.0 (the latest release) still uses collections.Iterable, removed in Python 3.10:
# serialising any nested object (container, health checks) fails without this alias. The alias
# is for the public client under test only; saltyard's own code does not use that library.
if not hasattr(collections, "Iterable"):
    collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]

docker = pytest.importorskip("docker")

from marathon_helpers import LABEL, TASK_IMAGE, wait_until  # noqa: E402

from tests.processes import stop_process  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SESSION = f"pytest-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorProcess:
    def __init__(self, cluster: str, state_file: Path, log_file: Path, agents: list[str]):
        self.cluster = cluster
        self.state_file = state_file
        self.log_file = log_file
        self.agents = agents
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}  # extra environment (MARATHON_HTTP_CREDENTIALS)
        self.auth: tuple[str, str] | None = None  # what /ping is probed with

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorProcess:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "saltyard.marathon_emulator",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--state-file",
            str(self.state_file),
            "--cluster-name",
            self.cluster,
            "--kill-grace",
            "2",
            "--log-level",
            "DEBUG",
        ]
        for agent in self.agents:
            cmd += ["--agent", agent]
        log = open(self.log_file, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"emulator exited: {self.log_file.read_text()[-2000:]}")
            try:
                return requests.get(self.url + "/ping", timeout=1, auth=self.auth).text == "pong"
            except requests.RequestException:
                return False

        wait_until(up, 15, message="emulator /ping")
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (tasks keep running)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, grace=10)


def agent_specs(offset: int) -> list[str]:
    sock = "unix:///var/run/docker.sock"
    lo = 42000 + offset
    return [
        f"agent-fat={sock}:env=fat,rack=r1,@ports={lo}-{lo + 199},@bind=127.0.0.1",
        f"agent-prod={sock}:env=prod,rack=r2,@ports={lo + 200}-{lo + 399},@bind=127.0.0.1",
    ]


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no engine: skip the suite rather than fail obscurely
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    remove_containers(client, f"{LABEL}.cluster")


def remove_containers(client, label_filter: str) -> int:
    removed = 0
    for c in client.containers.list(all=True, sparse=True, filters={"label": label_filter}):
        if (c.attrs.get("Labels") or {}).get(f"{LABEL}.cluster", "").startswith(SESSION):
            c.remove(force=True)
            removed += 1
    return removed


@pytest.fixture(scope="session")
def task_image(docker_client):
    """A tag of the node image (Debian 12 + python3), removed again at the end."""
    from saltyard.localcluster import image

    created = False
    try:
        docker_client.images.get(TASK_IMAGE)
    except docker.errors.ImageNotFound:
        # The local cluster's node image (built once, cached by a hash of its inputs).
        docker_client.images.get(image.build()).tag(TASK_IMAGE)
        created = True
    yield TASK_IMAGE
    if created:
        docker_client.images.remove(TASK_IMAGE, noprune=True)


@pytest.fixture
def make_emulator(tmp_path, docker_client, task_image):
    """Factory: EmulatorProcess objects sharing nothing with other tests (own cluster label)."""
    started: list[EmulatorProcess] = []
    clusters: list[str] = []

    def make(name: str = "emu", offset: int = 400) -> EmulatorProcess:
        cluster = f"{SESSION}-{name}-{uuid.uuid4().hex[:4]}"
        clusters.append(cluster)
        emu = EmulatorProcess(
            cluster, tmp_path / f"{name}.json", tmp_path / f"{name}.log", agent_specs(offset)
        )
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
    for cluster in clusters:
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL}.cluster={cluster}"}
        ):
            c.remove(force=True)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, docker_client, task_image):
    """One emulator shared by a module's tests (each test uses its own app ids)."""
    tmp = tmp_path_factory.mktemp("emulator")
    cluster = f"{SESSION}-shared-{uuid.uuid4().hex[:4]}"
    emu = EmulatorProcess(cluster, tmp / "state.json", tmp / "emulator.log", agent_specs(0))
    emu.start()
    yield emu
    emu.stop()
    for c in docker_client.containers.list(
        all=True, filters={"label": f"{LABEL}.cluster={cluster}"}
    ):
        c.remove(force=True)
    if os.environ.get("EMULATOR_LOG"):
        print(emu.log_file.read_text())
