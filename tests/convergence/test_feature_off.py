"""Turning a feature off removes what it laid down, on the local cluster: the registry VIP
(off lo, its unit and ARP settings gone) and the Docker engine's TLS listener (the port closed,
its certificate and key gone). With the feature off, test mode and a second run find nothing
left to do; with it back on, the node converges again and a second highstate changes nothing.
"""

from __future__ import annotations

import json

import pytest

from tests.convergence.helpers import host

pytestmark = pytest.mark.cluster

VIP_UNIT = "/etc/systemd/system/saltyard-registry-vip.service"
VIP_SYSCTL = "/etc/sysctl.d/61-saltyard-registry-vip.conf"


def _off_then_back(cluster, node: str, off: dict, check_off, check_on) -> None:
    pillar = f"pillar={json.dumps(off)}"
    try:
        applied = cluster.highstate([node], pillar)[node]
        assert applied.ok and applied.changed, applied.describe()
        check_off()
        # Off and converged: test mode predicts nothing, and a second run changes nothing.
        predicted = cluster.highstate([node], pillar, "test=True")[node]
        assert predicted.ok and predicted.changed == [], predicted.describe()
        again = cluster.highstate([node], pillar)[node]
        assert again.ok and again.changed == [], again.describe()
    finally:
        # Back on (the site's pillar), whatever happened above.
        restored = cluster.highstate([node])[node]
    assert restored.ok and restored.changed, restored.describe()
    check_on()
    second = cluster.highstate([node])[node]
    assert second.ok and second.changed == [], second.describe()


def test_registry_vip_unset_takes_it_off_lo(cluster, converged):
    registry = [n for n in cluster.nodes if n.has_role("registry")][-1]
    vip = cluster.pillar(registry.name, "registry:vip:address")
    assert vip, "the local site sets a registry VIP"
    h = host(registry.name)

    def on_lo() -> bool:
        return f"inet {vip}/32" in h.check_output("ip -4 -o addr show dev lo")

    def sysctl(key: str) -> str:
        return h.check_output(f"sysctl -n net.ipv4.conf.all.{key}")

    def off() -> None:
        assert not on_lo()
        assert not h.file(VIP_UNIT).exists and not h.file(VIP_SYSCTL).exists
        assert sysctl("arp_ignore") == "0" and sysctl("arp_announce") == "0"

    def on() -> None:
        assert on_lo()
        assert sysctl("arp_ignore") == "1" and sysctl("arp_announce") == "2"

    on()
    _off_then_back(cluster, registry.name, {"registry": {"vip": {"address": ""}}}, off, on)


def test_docker_tls_listener_off_closes_the_port(cluster, converged):
    # A container agent: agent-vm (the last agent) is emulated, and its highstates are slow.
    agent = [n for n in cluster.nodes if n.has_role("mesos-agent") and not n.is_vm][-1]
    port = cluster.pillar(agent.name, "docker:tls_listener:port") or 2376
    h = host(agent.name)
    listener = h.socket(f"tcp://{agent.address}:{port}")

    def off() -> None:
        assert not listener.is_listening
        assert not h.file("/etc/docker/tls").exists
        assert "tlsverify" not in h.file("/etc/docker/daemon.json").content_string

    def on() -> None:
        assert listener.is_listening
        assert h.file("/etc/docker/tls/key.pem").exists

    on()
    off_pillar = {"docker": {"tls_listener": {"enabled": False}}}
    _off_then_back(cluster, agent.name, off_pillar, off, on)
