"""The lvs state and the registry's VIP part, rendered by Salt on the host for nodes of the shipped
inventory with the local site's pillar: what they lay down, and the VIPs they refuse (at render
time, so before anything changes)."""

from __future__ import annotations

import pytest

from tests.state_render import RenderRefused, StateRenderer, state_args


@pytest.fixture(scope="module")
def lvs1(tmp_path_factory) -> StateRenderer:
    # The interface is found from grains on the node: give lvs1's, as the VM has it.
    grains = {"ip4_interfaces": {"lo": ["127.0.0.1"], "ens2": ["172.30.0.140"]}}
    return StateRenderer(tmp_path_factory.mktemp("render-lvs1"), "lvs1", grains=grains)


def test_keepalived_config_serves_the_registries_by_direct_routing(lvs1):
    rendered = lvs1.show_sls("lvs")
    config = state_args(rendered, "lvs-keepalived-config")
    text = config["contents"]
    assert config["name"] == "/etc/keepalived/keepalived.conf"
    # Checked before it replaces the live file, then reloaded, not restarted.
    assert config["check_cmd"] == "keepalived -t -f"
    service = state_args(rendered, "keepalived")
    assert service["fun"] == "service.running" and service["reload"] is True
    assert {"file": "lvs-keepalived-config"} in [dict(w) for w in service["watch"]]
    # The VIP from pillar/sites/local.sls, on the interface that holds lvs1's address.
    assert "virtual_server 172.30.0.200 5000 {" in text
    assert "172.30.0.200/32 dev ens2" in text and "interface ens2" in text
    assert "state MASTER" in text and "lb_kind DR" in text and "lb_algo wlc" in text
    # The inventory's registries, health-checked on their debug listener.
    for address in ("172.30.0.31", "172.30.0.32"):
        assert f"real_server {address} 5000 {{" in text
        assert f"connect_ip {address}\n" in text
    assert text.count("connect_port 5001") == 2 and text.count("path /debug/health") == 2
    assert "delay_loop 2" in text and "connect_timeout 1" in text
    assert state_args(rendered, "lvs-ip_vs-module")["name"] == "ip_vs"
    assert state_args(rendered, "lvs-packages")["pkgs"] == ["keepalived", "ipvsadm"]


def test_registry_holds_the_vip_on_lo_and_listens_on_it(registry1):
    rendered = registry1.show_sls("registry")
    unit = state_args(rendered, "registry-vip-unit")["contents"]
    assert "ip addr add 172.30.0.200/32 dev lo label lo:vip" in unit
    assert state_args(rendered, "registry-vip-net.ipv4.conf.all.arp_ignore")["value"] == 1
    assert state_args(rendered, "registry-vip-net.ipv4.conf.all.arp_announce")["value"] == 2
    http = state_args(rendered, "registry-config")["dataset"]["http"]
    assert http["addr"] == ":5000"
    assert http["debug"]["addr"] == "172.30.0.31:5001"


def test_registry_without_a_vip_is_as_before(registry1):
    rendered = registry1.show_sls("registry", pillar={"registry": {"vip": {"address": ""}}})
    # Only the states that take an earlier VIP away (tests/unit/test_feature_off_render.py).
    vip_states = [state for state in rendered if "vip" in state]
    assert all(
        state_args(rendered, s)["fun"] in ("service.dead", "file.absent", "cmd.run")
        for s in vip_states
    ), vip_states
    assert state_args(rendered, "registry-config")["dataset"]["http"]["addr"] == "172.30.0.31:5000"


BAD_VIPS = [
    ("10.1.2.3", "is outside the cluster network 172.30.0.0/24"),
    ("172.30.0.77", "is inside Docker's ip_range 172.30.0.0/25"),
    ("172.30.0.140", "is the address of node lvs1"),
    ("172.30.0.255", "is the network or broadcast address of 172.30.0.0/24"),
    ("172.30.0.1", "is the cluster network's gateway"),
    ("172.30.0.300", "is not an IPv4 address"),
    ("registry.example", "is not an IPv4 address"),
]


@pytest.mark.parametrize(("vip", "reason"), BAD_VIPS)
def test_lvs_refuses_a_bad_vip_naming_it(lvs1, vip, reason):
    with pytest.raises(RenderRefused) as refused:
        lvs1.show_sls("lvs", pillar={"registry": {"vip": {"address": vip}}})
    assert f'pillar registry:vip:address "{vip}" {reason}' in str(refused.value)


@pytest.mark.parametrize(("vip", "reason"), BAD_VIPS[:3])
def test_registry_refuses_the_same_bad_vip(registry1, vip, reason):
    with pytest.raises(RenderRefused) as refused:
        registry1.show_sls("registry", pillar={"registry": {"vip": {"address": vip}}})
    assert f'pillar registry:vip:address "{vip}" {reason}' in str(refused.value)


@pytest.mark.parametrize(
    ("pillar", "message"),
    [
        ({"registry": {"vip": {"address": ""}}}, "pillar registry:vip:address is not set"),
        (
            {"registry": {"vip": {"port": 443}}},
            "pillar registry:vip:port 443 differs from registry:port 5000",
        ),
        ({"lvs": {"scheduler": "fastest"}}, 'pillar lvs:scheduler is "fastest"'),
        ({"lvs": {"health": {"delay_loop": 0}}}, "pillar lvs:health:delay_loop is 0"),
        ({"lvs": {"interface": ""}, "saltyard": {"node": {"address": "172.30.0.141"}}}, None),
    ],
)
def test_lvs_refuses_other_bad_input(lvs1, pillar, message):
    if message is None:  # no interface holds the node's address
        message = "no network interface of lvs1 holds its inventory address 172.30.0.141"
    with pytest.raises(RenderRefused) as refused:
        lvs1.show_sls("lvs", pillar=pillar)
    assert message in str(refused.value)
