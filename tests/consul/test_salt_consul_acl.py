"""saltyard's ``consul_acl`` execution module and state, loaded by Salt's own loader, against a
real Consul 1.8 server on loopback (the version the consul role installs; scripts/host-setup.sh
installs it on the host): waiting for the leader and the ACL system, then a policy and a token.

A server whose ``primary_datacenter`` is elsewhere stays in legacy ACL mode for good, which is
how the wait for the ACL system is tested: a fresh datacenter is in that mode only for a moment
after its first election (the moment a first highstate once hit)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError

from tests.support.consul import ConsulAgent

REPO = Path(__file__).resolve().parents[2]
LEGACY = "The ACL system is currently in legacy mode"


@pytest.fixture
def server(tmp_path):
    """start(extra) -> a one-server datacenter (ACLs on, default deny, a master token) with the
    extra configuration, started without waiting: the tests wait through the module."""
    started = []

    def start(extra: str = "") -> ConsulAgent:
        s = ConsulAgent(
            tmp_path / f"consul{len(started)}", dev=False, extra_config=extra, node_name="acl-test"
        )
        started.append(s)
        return s.start(wait=False)

    yield start
    for s in started:
        s.stop()


def _loader(tmp_path: Path, server: ConsulAgent, *, master: bool = True):
    """(execution modules, states) as a minion with pillar ``consul`` sees them."""
    acl = {"master_token": server.master} if master else {}
    opts = salt.config.minion_config(None)
    opts.update(
        file_client="local",
        cachedir=str(tmp_path / "salt-cache"),
        extension_modules=str(tmp_path / "salt-cache" / "extmods"),
        module_dirs=[str(REPO / "_modules")],
        states_dirs=[str(REPO / "_states")],
        pillar={"consul": {"http_addr": f"127.0.0.1:{server.http_port}", "acl": acl}},
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
        f"{consul_server.url}/v1/acl/token/self",
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
