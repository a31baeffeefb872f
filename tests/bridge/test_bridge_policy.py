"""salt/consul/policies/bridge.hcl is enough for the bridge, and every rule in it is needed:
each kind of Consul call the bridge makes, run with a token of the policy, then with a token of
the policy less one rule (ACLs on, default deny).

The rule on saltyard/ipam/ is needed only with --ipam-reconcile (off by default), so "every rule
is needed" runs the calls of a bridge with it on; a bridge with it off is shown to work without
that rule (a cluster without the IPAM plugin needs no ACL on its keys)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from saltyard.bridge.consul_store import (
    ConsulError,
    ConsulStore,
    op_node_delete,
    op_service_delete,
    registration_ops,
)
from saltyard.bridge.registrations import OWNER_META, Registration

POLICY_FILE = Path(__file__).resolve().parents[2] / "salt" / "consul" / "policies" / "bridge.hcl"
RULE = re.compile(r'^(\w+)\s+"([^"]*)"\s*\{.*?^\}\n?', re.M | re.S)


def rules() -> list[tuple[str, str]]:
    text = POLICY_FILE.read_text()
    return [(f"{m[1]} {m[2]!r}", m[0]) for m in RULE.finditer(text)]


IPAM_RULE = "key_prefix 'saltyard/ipam/'"


def exercise(consul_agent, token: str, ipam: bool = True) -> str | None:
    """Every kind of Consul call the bridge makes, in its order; the first failure or None.
    ``ipam``: with those of --ipam-reconcile (read every allocation, free one, fenced)."""
    store = ConsulStore(consul_agent.url, token, timeout=5)
    key = f"saltyard/bridge/policy-{uuid.uuid4().hex[:8]}"
    ipam_prefix = f"saltyard/ipam/policy-{uuid.uuid4().hex[:8]}/"
    record_key = f"{ipam_prefix}tasks/172.30.0.141"
    record = {"pool": "tasks", "address": "172.30.0.141", "host": "gone", "task_id": "web.1"}
    consul_agent.admin().kv.put(record_key, json.dumps(record))
    reg = Registration(
        service_id=f"policy-task-{uuid.uuid4().hex[:8]}",
        service="policy-web",
        node="marathon-policy-host",
        address="127.0.0.1",
        port=1,
        tags=("env:test",),
        meta=tuple(
            sorted({**OWNER_META, "marathon-app": "/p", "marathon-host": "policy-host"}.items())
        ),
    )
    try:
        session = store.create_session("policy test", 10, 0)
        if not store.renew_session(session):
            return "session renewal refused"
        if store.lock_holder(key)[1] is not None:
            return "the key is already held"
        if not store.acquire(key, session, "{}"):
            return "acquire refused"
        store.apply(registration_ops([reg], {}), key, session)
        snapshot = store.snapshot()
        if reg.service_id not in snapshot.services:
            return "the registration is not visible to the bridge"
        node = snapshot.nodes[reg.node]
        store.apply(
            [op_service_delete(reg), op_node_delete(reg.node, node.modify_index)], key, session
        )
        if reg.node in store.snapshot().nodes:
            return "the node was not deleted"
        if ipam:
            entries = store.kv_tree(ipam_prefix)
            if [e["Key"] for e in entries] != [record_key]:
                return f"the allocation is not visible to the bridge: {entries}"
            if not store.delete_fenced(record_key, entries[0]["ModifyIndex"], key, session):
                return "the allocation was not freed"
            if consul_agent.admin().kv.get(record_key)[1] is not None:
                return "the allocation is still there"
        store.release(key, session)
        store.destroy_session(session)
    except ConsulError as exc:
        return str(exc)
    return None


def test_the_policy_file_has_the_five_rules():
    assert [name for name, _ in rules()] == [
        "node_prefix 'marathon-'",
        "service_prefix ''",
        "key_prefix 'saltyard/bridge/'",
        "session_prefix ''",
        IPAM_RULE,
    ]


def test_the_policy_is_enough(consul_agent):
    secret = str(uuid.uuid4())
    consul_agent.create_token(secret, POLICY_FILE.read_text(), f"full-{secret[:8]}")
    assert exercise(consul_agent, secret) is None


@pytest.mark.parametrize("dropped", [name for name, _ in rules()])
def test_every_rule_is_needed(consul_agent, dropped):
    text = "".join(block for name, block in rules() if name != dropped)
    secret = str(uuid.uuid4())
    consul_agent.create_token(secret, text, f"less-{secret[:8]}")
    failure = exercise(consul_agent, secret)
    assert failure is not None, f"the bridge works without {dropped}: the policy is not minimal"
    assert "Permission denied" in failure or "permission denied" in failure, failure


def test_without_ipam_reconciliation_the_ipam_rule_is_not_needed(consul_agent):
    text = "".join(block for name, block in rules() if name != IPAM_RULE)
    secret = str(uuid.uuid4())
    consul_agent.create_token(secret, text, f"noipam-{secret[:8]}")
    assert exercise(consul_agent, secret, ipam=False) is None
