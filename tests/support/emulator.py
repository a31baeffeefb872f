"""The Marathon-API emulator (a development stand-in, saltyard.marathon_emulator) as a subprocess
on 127.0.0.1, with agents on the host's Docker engine whose published ports bind to loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.processes import stop_process
from tests.support import docker as support_docker
from tests.support import starts
from tests.support.wait import free_port, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
DOCKER_SOCKET = "unix:///var/run/docker.sock"


def agent_specs(first_port: int) -> list[str]:
    """Two agents on the host's engine: agent-fat (env=fat, rack=r1) and agent-prod (env=prod,
    rack=r2), 200 host ports each from ``first_port``; suites use distinct ranges."""
    lo = first_port
    return [
        f"agent-fat={DOCKER_SOCKET}:env=fat,rack=r1,@ports={lo}-{lo + 199},@bind=127.0.0.1",
        f"agent-prod={DOCKER_SOCKET}:env=prod,rack=r2,@ports={lo + 200}-{lo + 399},@bind=127.0.0.1",
    ]


class EmulatorProcess:
    """One emulator; the first ``start()`` picks a free port; each waits for ``/ping``."""

    def __init__(self, cluster: str, state_file: Path, log_file: Path, agents: list[str]):
        self.cluster = cluster
        self.state_file = Path(state_file)
        self.log_file = Path(log_file)
        self.agents = list(agents)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}  # extra environment (MARATHON_HTTP_CREDENTIALS)
        self.args: list[str] = []  # extra options (--mesos-role ...)
        self.auth: tuple[str, str] | None = None  # what /ping is probed with

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> EmulatorProcess:
        with starts.timed("emulator", "start"):
            # A restart keeps the port, so clients (a bridge under test) find the emulator again.
            self.port = self.port or free_port()
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
            cmd += self.args
            with open(self.log_file, "a") as log:
                self.proc = subprocess.Popen(
                    cmd,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **self.env},
                )

            def up():
                if self.proc.poll() is not None:
                    raise AssertionError(f"emulator exited: {tail(self.log_file, 2000)}")
                try:
                    return (
                        requests.get(self.url + "/ping", timeout=1, auth=self.auth).text == "pong"
                    )
                except requests.RequestException:
                    return False

            wait_until(up, timeout, message="emulator /ping")
            return self

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (tasks keep running)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        with starts.timed("emulator", "stop"):
            stop_process(self.proc, grace=10)

    def log(self) -> str:
        return tail(self.log_file, 20000)


def new_cluster_name(name: str = "emu", session: str | None = None) -> str:
    """A cluster name (container label) under the session's prefix, unique per emulator."""
    return f"{session or support_docker.SESSION}-{name}-{uuid.uuid4().hex[:4]}"


@contextmanager
def running_emulator(
    engine, workdir: Path, first_port: int, name: str = "emu", session: str | None = None
) -> Iterator[EmulatorProcess]:
    """An emulator of its own cluster in ``workdir``, started; on the way out it is stopped and
    its containers removed, even when the body failed."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = new_cluster_name(name, session)
    emu = EmulatorProcess(
        cluster, workdir / f"{name}-state.json", workdir / f"{name}.log", agent_specs(first_port)
    )
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()
        support_docker.remove_cluster(engine, cluster)
