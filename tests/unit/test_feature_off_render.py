"""Turning a feature off removes what it laid down, rendered by Salt on the host for nodes of
the shipped inventory: the registry VIP (off lo, its unit gone, the ARP settings back) and the
Docker engine's TLS listener (no TCP port, its certificate and key gone)."""

from __future__ import annotations

import pytest

from tests.state_render import StateRenderer, state_args

NO_VIP = {"registry": {"vip": {"address": ""}}}
UNIT = "/etc/systemd/system/saltyard-registry-vip.service"


def test_no_vip_takes_it_away(registry1):
    rendered = registry1.show_sls("registry.vip", pillar=NO_VIP)
    service = state_args(rendered, "registry-vip")
    assert service["fun"] == "service.dead" and service["enable"] is False
    assert service["name"] == "saltyard-registry-vip"
    # Only where an earlier VIP left its unit (elsewhere test mode has nothing to predict).
    assert service["onlyif"] == f"test -e {UNIT}"
    unit = state_args(rendered, "registry-vip-unit")
    assert unit["fun"] == "file.absent" and unit["name"] == UNIT
    assert {"service": "registry-vip"} in [dict(r) for r in unit["require"]]
    address = state_args(rendered, "registry-vip-address")
    assert address["name"] == "ip -4 addr flush dev lo label lo:vip"
    assert address["onlyif"].startswith("ip -4 -o addr show dev lo label lo:vip")
    sysctl_file = state_args(rendered, "registry-vip-sysctl-file")
    assert sysctl_file["fun"] == "file.absent"
    assert sysctl_file["name"] == "/etc/sysctl.d/61-saltyard-registry-vip.conf"
    for key in ("arp_ignore", "arp_announce"):
        back = state_args(rendered, f"registry-vip-net.ipv4.conf.all.{key}")
        assert back["name"] == f"sysctl -w net.ipv4.conf.all.{key}=0"
        # Only when the file went in this run: a second run changes nothing.
        assert back["onchanges"] == [{"file": "registry-vip-sysctl-file"}]


def test_vip_on_lays_it_down(registry1):
    rendered = registry1.show_sls("registry.vip")
    assert state_args(rendered, "registry-vip")["fun"] == "service.running"
    assert state_args(rendered, "registry-vip-unit")["fun"] == "file.managed"
    assert state_args(rendered, "registry-vip-net.ipv4.conf.all.arp_ignore")["value"] == 1
    assert "registry-vip-sysctl-file" not in rendered


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> StateRenderer:
    pki = {"ca": "CA", "docker_clients_ca": "CLIENTS-CA", "node": {"cert": "C", "key": "K"}}
    return StateRenderer(tmp_path_factory.mktemp("render-agent"), "agent-fat", pillar={"pki": pki})


def test_tls_listener_off_removes_it(agent):
    rendered = agent.show_sls("docker", pillar={"docker": {"tls_listener": {"enabled": False}}})
    listeners = state_args(rendered, "docker-listeners")["contents"]
    assert "tcp://" not in listeners
    daemon = state_args(rendered, "docker-daemon-config")["dataset"]
    assert not {"tlsverify", "tlscacert", "tlscert", "tlskey"} & set(daemon)
    gone = state_args(rendered, "docker-tls-dir")
    assert gone["fun"] == "file.absent" and gone["name"] == "/etc/docker/tls"
    # After the engine runs without them.
    assert {"service": "docker"} in [dict(r) for r in gone["require"]]
    assert not [s for s in rendered if s.startswith("docker-tls-") and s != "docker-tls-dir"]


def test_tls_listener_on_lays_it_down(agent):
    rendered = agent.show_sls("docker")  # the local site turns it on
    assert "-H tcp://172.30.0.21:2376" in state_args(rendered, "docker-listeners")["contents"]
    assert state_args(rendered, "docker-tls-key.pem")["name"] == "/etc/docker/tls/key.pem"
    assert "docker-tls-dir" not in rendered
