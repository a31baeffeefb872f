"""Fixtures for the IPAM plugin's tests, against real components started here: a Consul 1.8 dev
agent with ACLs on (default deny), whose token for the plugins holds exactly
salt/consul/policies/ipam.hcl, and plugin daemons as subprocesses (``python -m saltyard.ipam``).
The Docker suite (test_ipam_docker.py) adds the host's Docker engine and a Linux bridge.

Every plugin started is stopped and its log printed (pytest shows it for failing tests).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from saltyard.clients.consul import ConsulClient
from tests.support.consul import ConsulAgent
from tests.support.ipam import IpamProcess, add_ipam_token


@pytest.fixture(scope="session")
def ipam_consul(tmp_path_factory) -> Iterator[ConsulAgent]:
    agent = ConsulAgent(tmp_path_factory.mktemp("consul"), node_name="ipam-test-consul")
    try:
        agent.start()
        agent.ipam_token = add_ipam_token(agent)
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="session")
def admin(ipam_consul) -> ConsulClient:
    """The project's Consul client with the master token, to look at (and tamper with) KV."""
    return ConsulClient(ipam_consul.url, ipam_consul.master)


@pytest.fixture
def unique() -> str:
    """A short id for this test's pool, host and plugin names."""
    return uuid.uuid4().hex[:6]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for plugin sockets (a unix socket path has at most 107 bytes, and
    pytest's tmp_path can be long); removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="ipam-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_plugin(tmp_path, ipam_consul) -> Iterator[Callable[..., IpamProcess]]:
    """Factory for plugin daemons with the ipam token; ``config`` is the configuration file
    (without ``consul`` unless given). Every plugin is stopped at the end."""
    started: list[IpamProcess] = []

    def make(name: str, config: dict[str, Any], *, token: str | None = "ipam") -> IpamProcess:
        proc = IpamProcess(
            name,
            tmp_path,
            ipam_consul,
            ipam_consul.ipam_token if token == "ipam" else token,
            config,
        )
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
        print(f"----- ipam {proc.name} log (tail)\n{proc.log()}")


def keys(admin: ConsulClient, pool: str) -> dict[str, dict]:
    """address -> the JSON record of every key under saltyard/ipam/<pool>/."""
    _, entries = admin.api.kv.get(f"saltyard/ipam/{pool}/", recurse=True)
    return {e["Key"].rsplit("/", 1)[1]: json.loads(e["Value"]) for e in entries or []}


@pytest.fixture(scope="session")
def consul_keys() -> Callable[[ConsulClient, str], dict[str, dict]]:
    return keys
