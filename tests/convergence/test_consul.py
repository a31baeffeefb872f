"""Consul on every node: servers from the inventory, gossip encrypted, ACLs deny by default, one
token per role (generated on the master, registered by the first server)."""

from __future__ import annotations

import json

import pytest

from tests.convergence.helpers import docker_app, host
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def control(cluster) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("consul-server"))


def api(cluster, node: str, path: str, token: str | None = None, method: str = "GET"):
    """(HTTP status, body) of a request to the node's local Consul agent."""
    cmd = ["curl", "-sS", "-w", "\\n%{http_code}", "-X", method]
    if token:
        cmd += ["-H", f"X-Consul-Token: {token}"]
    _, out = cluster.exec(node, [*cmd, f"http://127.0.0.1:8500{path}"], False)
    body, _, status = out.rstrip().rpartition("\n")
    return int(status), body


def test_every_node_runs_consul_1_8_from_the_pinned_source(cluster, converged):
    for node in cluster.nodes:
        h = host(node.name)
        pkg = h.package("consul")
        assert pkg.is_installed and pkg.version.startswith("1.8."), (node.name, pkg.version)
        assert h.service("consul").is_running, node.name
        config = h.file("/etc/consul.d/saltyard.json")
        assert config.mode == 0o640 and config.group == "consul", node.name
    # Nothing else came from the extra suite.
    _, out = cluster.exec(control(cluster), ["apt-cache", "policy", "curl"])
    assert "bullseye" not in out.split("Version table:")[0], out


def test_cluster_formed_with_encrypted_gossip(cluster, converged):
    server = control(cluster)
    master_token = cluster.pillar(server, "consul:acl:master_token")
    expected = {n.name for n in cluster.nodes}

    def missing() -> set[str]:
        status, body = api(cluster, server, "/v1/catalog/nodes", master_token)
        return expected - ({n["Node"] for n in json.loads(body)} if status == 200 else set())

    # Agents register once their token exists (the first server creates it): anti-entropy
    # retries within a couple of minutes.
    wait_until(lambda: not missing(), 180, 5, "every node in the catalog")
    code, out = cluster.exec(
        server, ["sh", "-c", f"CONSUL_HTTP_TOKEN={master_token} consul info | grep encrypted"]
    )
    assert "encrypted = true" in out, out
    assert len([line for line in out.splitlines() if "encrypted = true" in line]) >= 1


def test_acls_deny_by_default_and_tokens_have_their_role(cluster, converged):
    server = control(cluster)
    lb = next((n.name for n in cluster.nodes if n.has_role("lb")), server)
    # Anonymous: nothing readable, nothing writable.
    status, body = api(cluster, lb, "/v1/catalog/nodes")
    assert status == 200 and json.loads(body) == [], body
    status, _ = api(cluster, lb, "/v1/kv/saltyard-test", method="PUT")
    assert status == 403
    # The lb token reads the catalog but cannot write keys.
    lb_token = cluster.pillar(lb, "consul:acl:tokens:lb")
    status, body = api(cluster, lb, "/v1/catalog/nodes", lb_token)
    assert status == 200 and json.loads(body), body
    status, _ = api(cluster, lb, "/v1/kv/saltyard-test", lb_token, method="PUT")
    assert status == 403
    # Only the servers hold the master token and the other roles' tokens.
    assert cluster.pillar(lb, "consul:acl:master_token") == ""
    assert cluster.pillar(lb, "consul:acl:tokens:discovery") == ""
    tokens = cluster.salt([server], "consul_acl.token", lb_token)[server]
    assert [p["Name"] for p in tokens["Policies"]] == ["lb"], tokens


def test_bridge_registers_a_healthy_fat_app(cluster, converged, registry_image):
    """The bridge on the discovery node puts each healthy task of an app in Consul, with the
    agent's cluster address, and removes them when the app goes."""
    marathon = next(n.name for n in cluster.nodes if n.has_role("marathon"))
    server = control(cluster)
    master_token = cluster.pillar(server, "consul:acl:master_token")
    agent = next(n for n in cluster.nodes if n.has_role("mesos-agent") and n.env == "fat")
    app_id = "/convergence/bridge-web"
    app = docker_app(
        app_id,
        registry_image,
        2,
        health_check={"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 2},
    )
    out = cluster.salt(
        [marathon],
        "state.single",
        "marathon_application.present",
        f"name={app_id}",
        f"app={json.dumps(app)}",
        "timeout=240",
    )[marathon]
    (ret,) = out.values()
    assert ret["result"] is True, ret

    def instances():
        status, body = api(
            cluster, server, "/v1/catalog/service/convergence-bridge-web", master_token
        )
        return json.loads(body) if status == 200 else []

    try:
        wait_until(lambda: len(instances()) == 2, 90, 2, "two instances in the catalog")
        tasks = cluster.salt([marathon], "marathon_api.tasks", app_id)[marathon]
        found = instances()
        assert {s["ServiceAddress"] or s["Address"] for s in found} == {agent.address}, found
        assert sorted(s["ServicePort"] for s in found) == sorted(t["ports"][0] for t in tasks)
        for s in found:
            assert "env:fat" in s["ServiceTags"], s
            assert any(t.startswith("marathon-task:") for t in s["ServiceTags"]), s
    finally:
        cluster.salt(
            [marathon],
            "state.single",
            "marathon_application.absent",
            f"name={app_id}",
            "force=True",
        )
    wait_until(lambda: not instances(), 90, 2, "the instances gone from the catalog")
