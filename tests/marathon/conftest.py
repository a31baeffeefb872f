"""Fixtures for the Marathon emulator suite: emulator subprocesses on 127.0.0.1 (tests/support)
and cleanup of every container the suite created (by label), even on failure.

Two agents point at the host's Docker engine with different attributes and port ranges; published
ports bind to 127.0.0.1 only, so health checks and tests talk to loopback. The Docker client and
the task image are the shared fixtures of tests/support.
"""

from __future__ import annotations

import collections
import collections.abc
import os

import pytest

# marathon==0.13.0 (the latest release) still uses collections.Iterable, removed in Python 3.10:
# serialising any nested object (container, health checks) fails without this alias. The alias
# is for the public client under test only; saltyard's own code does not use that library.
if not hasattr(collections, "Iterable"):
    collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]

from tests.support import docker as support_docker  # noqa: E402
from tests.support.emulator import (  # noqa: E402
    EmulatorProcess,
    agent_specs,
    new_cluster_name,
    running_emulator,
)

# The emulator's agents publish task ports from here (tests/bridge and tests/lb use others);
# make_emulator's ``offset`` moves a test's own emulator off the shared one's range.
FIRST_PORT = 42000


@pytest.fixture
def make_emulator(tmp_path, docker_client, task_image):
    """Factory: EmulatorProcess objects sharing nothing with other tests (own cluster label)."""
    started: list[EmulatorProcess] = []

    def make(name: str = "emu", offset: int = 400) -> EmulatorProcess:
        emu = EmulatorProcess(
            new_cluster_name(name),
            tmp_path / f"{name}.json",
            tmp_path / f"{name}.log",
            agent_specs(FIRST_PORT + offset),
        )
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        support_docker.remove_cluster(docker_client, emu.cluster)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, docker_client, task_image):
    """One emulator shared by a module's tests (each test uses its own app ids)."""
    tmp = tmp_path_factory.mktemp("emulator")
    with running_emulator(docker_client, tmp, FIRST_PORT, "shared") as emu:
        yield emu
        if os.environ.get("EMULATOR_LOG"):
            print(emu.log())
