"""saltyard's ``consul_acl`` execution module and state, loaded by Salt's own loader, against a
real Consul 1.8 server on loopback (the version the consul role installs; scripts/host-setup.sh
installs it on the host): waiting for the leader and the ACL system, then a policy and a token.

A server whose ``primary_datacenter`` is elsewhere stays in legacy ACL mode for good, which is
how the wait for the ACL system is tested: a fresh datacenter is in that mode only for a moment
after its first election (the moment a first highstate once hit)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import consul
import pytest
import requests
import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError

from tests.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
LEGACY = "The ACL system is currently in legacy mode"

pytestmark = pytest.mark.skipif(
    shutil.which("consul") is None, reason="consul is missing: run scripts/host-setup.sh"
)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ConsulServer:
    """One Consul server (bootstrap_expect 1) with ACLs on, default deny, and a master token."""

    def __init__(self, workdir: Path, extra: str = ""):
        self.workdir = workdir
        self.master_token = str(uuid.uuid4())
        self.http, serf_lan, serf_wan, server = _free_ports(4)
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "server.hcl"
        self.config.write_text(
            f"""
            server = true
            bootstrap_expect = 1
            node_name = "acl-test"
            data_dir = "{workdir / "data"}"
            bind_addr = "127.0.0.1"
            client_addr = "127.0.0.1"
            ports {{
              http = {self.http}
              serf_lan = {serf_lan}
              serf_wan = {serf_wan}
              server = {server}
              dns = -1
              grpc = -1
            }}
            acl {{
              enabled = true
              default_policy = "deny"
              tokens {{ master = "{self.master_token}" }}
            }}
            {extra}
            """
        )
        self.log = workdir / "consul.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ConsulServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["consul", "agent", "-config-file", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def admin(self) -> consul.Consul:
        return consul.Consul(host="127.0.0.1", port=self.http, token=self.master_token)


@pytest.fixture
def server(tmp_path):
    started = []

    def start(extra: str = "") -> ConsulServer:
        s = ConsulServer(tmp_path / f"consul{len(started)}", extra).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _loader(tmp_path: Path, server: ConsulServer, *, master: bool = True):
    """(execution modules, states) as a minion with pillar ``consul`` sees them."""
    acl = {"master_token": server.master_token} if master else {}
    opts = salt.config.minion_config(None)
    opts.update(
        file_client="local",
        cachedir=str(tmp_path / "salt-cache"),
        extension_modules=str(tmp_path / "salt-cache" / "extmods"),
        module_dirs=[str(REPO / "_modules")],
        states_dirs=[str(REPO / "_states")],
        pillar={"consul": {"http_addr": f"127.0.0.1:{server.http}", "acl": acl}},
    )
    utils = salt.loader.utils(opts)
    funcs = salt.loader.minion_mods(opts, utils=utils)
    states = salt.loader.states(opts, funcs, utils, salt.loader.serializers(opts))
    assert "consul_acl.wait_for_leader" in funcs
    return funcs, states


def test_wait_returns_once_acl_changes_work(server, tmp_path):
    consul_server = server()
    funcs, states = _loader(tmp_path, consul_server)
    # Called right after the start: it waits through the election and the ACL mode switch, and
    # returns the leader's server (RPC) address.
    assert funcs["consul_acl.wait_for_leader"](60).startswith("127.0.0.1:")
    # At once, with no retry: the policy and the token are created.
    made = states["consul_acl.policy_present"]("acl-test", 'key_prefix "" { policy = "read" }')
    assert made["result"] is True, made
    token = str(uuid.uuid4())
    made = states["consul_acl.token_present"]("acl-test", token, ["acl-test"])
    assert made["result"] is True, made
    admin = consul_server.admin()
    assert [p["Name"] for p in admin.acl.policy.list()].count("acl-test") == 1
    # Read back with the token itself (its SecretID), not through the module.
    me = requests.get(
        f"http://127.0.0.1:{consul_server.http}/v1/acl/token/self",
        headers={"X-Consul-Token": token},
        timeout=10,
    )
    assert me.status_code == 200, me.text
    assert [p["Name"] for p in me.json()["Policies"]] == ["acl-test"]


def test_a_server_in_legacy_acl_mode_is_named_and_nothing_is_written(server, tmp_path):
    consul_server = server('primary_datacenter = "elsewhere"')
    funcs, states = _loader(tmp_path, consul_server)
    started = time.monotonic()
    with pytest.raises(CommandExecutionError) as err:
        funcs["consul_acl.wait_for_leader"](20)
    assert time.monotonic() - started >= 19
    assert str(err.value).startswith("Consul is not ready for ACL changes after 20s: ")
    assert LEGACY in str(err.value)
    # The state says the same and fails, so the policies and tokens that require it never run.
    ret = states["consul_acl.leader"]("consul-leader", timeout=3)
    assert ret["result"] is False and LEGACY in ret["comment"]
    # A minion without the master token only needs the leader, which there is.
    plain, _ = _loader(tmp_path, consul_server, master=False)
    assert plain["consul_acl.wait_for_leader"](5).startswith("127.0.0.1:")
