"""Tasks on a named container network (Marathon 1.5+ ``networks: [{mode: container, name}]``)
end to end: the emulator runs them on a user-defined Docker network the test creates, and the
bridge registers each at its own address and container port, on its agent's node, whose address
stays the agent's; a host-port task beside them keeps the agent's address and its host port."""

from __future__ import annotations

import ipaddress

import requests

from tests.support.docker import TASK_IMAGE


def test_container_network_tasks_register_their_own_address_and_container_port(
    user_network, make_bridge, apps, marathon, consul_agent, h
):
    network, subnet = user_network
    bridge = make_bridge("net", "saltyard/bridge/net").start()
    bridge.wait_active()
    on_net = apps(
        h.web_app(
            "/netreg/web",
            2,
            cmd="exec python3 -m http.server 8080",
            networks=[{"mode": "container", "name": network.name}],
            container={
                "type": "DOCKER",
                "docker": {"image": TASK_IMAGE},
                "portMappings": [{"containerPort": 8080, "name": "http"}],
            },
        )
    )
    classic = apps(h.web_app("/netreg/classic", 1))  # BRIDGE, a host port, same agent

    def expected_on_net() -> dict[str, tuple]:
        return {
            tid: ("netreg-web", t["ipAddresses"][0]["ipAddress"], 8080)
            for tid, t in h.healthy_tasks(marathon, on_net["id"]).items()
        }

    def converged(count: int):
        def check():
            want = expected_on_net()
            have = h.owned_view(consul_agent, on_net["id"])
            return len(want) == count and have == want and have

        return check

    registered = h.wait_until(converged(2), 60, message="2 container-network instances")
    for _, address, port in registered.values():
        assert ipaddress.ip_address(address) in subnet and port == 8080
        # what a load balancer does with the instance: it answers there, directly
        assert requests.get(f"http://{address}:{port}/", timeout=5).status_code == 200
    for task in marathon.list_tasks(on_net["id"]):
        assert task["ports"] == []  # Marathon's container networking: no host port

    h.wait_until(
        lambda: (have := h.owned_view(consul_agent, classic["id"]))
        and have == h.expected_view(marathon, classic["id"], "netreg-classic"),
        60,
        message="the host-port instance",
    )
    (classic_instance,) = h.owned_view(consul_agent, classic["id"]).values()
    assert classic_instance[1] == "127.0.0.1"  # the agent's address, and its host port
    assert classic_instance[2] != 8080

    # The node is the agent's, at the agent's address, whatever its services' addresses are.
    one = next(iter(consul_agent.instances(on_net["id"]).values()))
    assert one["node"] == "marathon-agent-fat"
    assert one["meta"]["marathon-network"] == network.name
    assert "marathon-network" not in classic_instance_meta(consul_agent, classic["id"])
    _, node = consul_agent.admin().catalog.node("marathon-agent-fat")
    assert node["Node"]["Address"] == "127.0.0.1"

    # A killed task leaves; its replacement comes back with its own (new) address.
    victim = next(iter(registered))
    marathon.kill_task(on_net["id"], victim)
    h.wait_until(
        lambda: victim not in h.owned_view(consul_agent, on_net["id"]),
        20,
        message="the killed task out of Consul",
    )
    h.wait_until(converged(2), 60, message="the replacement registered")
    assert bridge.metrics().get('saltyard_bridge_skipped_tasks_total{reason="no_address"}') is None


def classic_instance_meta(consul_agent, app_id: str) -> dict:
    (instance,) = consul_agent.instances(app_id).values()
    return instance["meta"]
