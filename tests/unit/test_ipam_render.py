"""The ipam role (states/ipam: the IPAM plugin as a service, its configuration and Consul token,
the agents' macvlan network), rendered by Salt on the host for agent-fat of the shipped
inventory with the local site's pillar: what it lays down, and every bad pillar it refuses at
render time (so before anything changes), each refusal naming the value. The refusal of a
parent interface the node lacks is also checked where the state itself makes it, on a real
/sys/class/net, before it asks the engine anything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from saltyard import inventory
from tests.state_render import REPO, RenderRefused, StateRenderer, state_args
from tests.support.salt_loader import load_module

# What the master generates for an agent besides the inventory (salt/secrets.yaml).
SECRETS = {
    "pki": {"ca": "CA", "docker_clients_ca": "CLIENTS-CA", "node": {"cert": "C", "key": "K"}},
    "consul": {"encrypt": "not-a-key", "acl": {"tokens": {"agent": "a", "ipam": "not-a-token"}}},
    # The daemons' interpreter is this one here (the state asks it for the code digest).
    "ipam": {"python": sys.executable},
}
# agent-fat as its grains show it: eth0 holds its inventory address (the agent container's own
# veth on the cluster bridge).
GRAINS = {
    "ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": ["172.30.0.21"]},
    "ip_interfaces": {"lo": ["127.0.0.1"], "eth0": ["172.30.0.21"]},
    "hwaddr_interfaces": {"lo": "00:00:00:00:00:00", "eth0": "02:42:ac:1e:00:15"},
}
LOCAL_POOL = {
    "name": "tasks",
    "subnet": "172.30.0.0/24",
    "gateway": "172.30.0.1",
    "range": "172.30.0.224/28",
}


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> StateRenderer:
    return StateRenderer(
        tmp_path_factory.mktemp("render-ipam"), "agent-fat", pillar=SECRETS, grains=GRAINS
    )


@pytest.fixture(scope="module")
def rendered(agent) -> dict:
    return agent.show_sls("ipam")


def pools(*changes: dict) -> dict:
    """The ipam pillar with the local pool changed (a change of None drops that key)."""
    pool = dict(LOCAL_POOL)
    for change in changes:
        pool.update(change)
    return {"ipam": {"pools": [{k: v for k, v in pool.items() if v is not None}]}}


# ------------------------------------------------------------------------ what it lays down


def test_the_plugin_runs_before_docker_and_stops_after_it(rendered):
    unit = state_args(rendered, "ipam-unit")
    assert unit["name"] == "/etc/systemd/system/saltyard-ipam.service"
    text = unit["contents"]
    assert "Before=docker.service" in text and "After=network-online.target consul.service" in text
    assert f"ExecStart={sys.executable} -m saltyard.ipam --config /etc/saltyard/ipam.json" in text
    order = state_args(rendered, "ipam-docker-order")
    assert order["name"] == "/etc/systemd/system/docker.service.d/saltyard-ipam.conf"
    assert "Wants=saltyard-ipam.service\nAfter=saltyard-ipam.service" in order["contents"]
    # Only systemd reloads for the drop-in: the running engine is not restarted for it.
    reload = state_args(rendered, "ipam-systemd-reload")
    assert reload["name"] == "systemctl daemon-reload"
    assert reload["onchanges"] == [{"file": "ipam-docker-order"}]
    service = state_args(rendered, "saltyard-ipam")
    assert service["fun"] == "service.running" and service["enable"] is True
    watched = [dict(w) for w in service["watch"]]
    for state in ("ipam-unit", "ipam-config", "ipam-token", "ipam-code"):
        assert {"file": state} in watched


def test_the_configuration_is_the_pillars_and_checked_by_the_plugins_parser(rendered):
    config = state_args(rendered, "ipam-config")
    assert config["name"] == "/etc/saltyard/ipam.json"
    assert config["check_cmd"] == f"{sys.executable} -m saltyard.ipam --check --config"
    data = config["dataset"]
    assert data["host"] == "agent-fat"
    assert data["pools"] == [LOCAL_POOL]
    assert data["plugin"] == {
        "name": "saltyard-ipam",
        "socket": "/run/docker/plugins/saltyard-ipam.sock",
    }
    assert data["consul"]["token_file"] == "/etc/saltyard/ipam.token"
    assert data["consul"]["key_prefix"] == "saltyard/ipam"
    token = state_args(rendered, "ipam-token")
    assert token["mode"] == "0600" and token["show_changes"] is False
    assert token["contents"] == "not-a-token"


def test_the_check_cmd_accepts_the_rendered_file_and_refuses_a_bad_one(rendered, tmp_path):
    """The check_cmd as Salt runs it (the candidate file's path appended), for real."""
    config = state_args(rendered, "ipam-config")
    token = tmp_path / "ipam.token"
    token.write_text("not-a-token\n")
    data = dict(config["dataset"], consul=dict(config["dataset"]["consul"], token_file=str(token)))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(data))
    argv = config["check_cmd"].split()
    done = subprocess.run([*argv, str(good)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout and "tasks 172.30.0.0/24 range 172.30.0.224/28" in done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(data, pools=[dict(LOCAL_POOL, gateway="10.0.0.1")])))
    done = subprocess.run([*argv, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "gateway 10.0.0.1 is outside its subnet 172.30.0.0/24" in done.stderr


def test_the_macvlan_network_uses_the_nodes_own_interface_and_the_pool(rendered):
    network = state_args(rendered, "ipam-network")
    assert network["fun"] == "macvlan_network.present"
    assert network["name"] == "macvlan"
    # The interface holding agent-fat's inventory address (172.30.0.21).
    assert network["parent"] == "eth0"
    assert (network["subnet"], network["gateway"]) == ("172.30.0.0/24", "172.30.0.1")
    assert network["ip_range"] == "172.30.0.224/28"
    assert network["ipam_driver"] == "saltyard-ipam"
    assert network["ipam_options"] == {"pool": "tasks"}
    assert network["plugin_socket"] == "/run/docker/plugins/saltyard-ipam.sock"
    assert {"service": "saltyard-ipam"} in [dict(r) for r in network["require"]]


def test_a_range_that_is_no_cidr_gives_the_network_no_ip_range(agent):
    rendered = agent.show_sls("ipam", pillar=pools({"range": "172.30.0.224-172.30.0.230"}))
    assert state_args(rendered, "ipam-network")["ip_range"] is None


def test_a_reserved_address_is_clear_of_what_it_reserves(agent):
    # The VIP inside the range, but reserved: the pool never hands it out.
    rendered = agent.show_sls(
        "ipam", pillar=pools({"range": "172.30.0.192/28", "reserved": ["172.30.0.200"]})
    )
    assert state_args(rendered, "ipam-config")["dataset"]["pools"][0]["reserved"] == [
        "172.30.0.200"
    ]


def test_a_parent_from_pillar_wins(tmp_path):
    grains = dict(GRAINS, hwaddr_interfaces=dict(GRAINS["hwaddr_interfaces"], bond0="02:00"))
    renderer = StateRenderer(tmp_path, "agent-fat", pillar=SECRETS, grains=grains)
    rendered = renderer.show_sls("ipam", pillar={"ipam": {"network": {"parent": "bond0"}}})
    assert state_args(rendered, "ipam-network")["parent"] == "bond0"


# ------------------------------------------------------------------------ refusals
# Every refusal by the functions the render calls (saltyard_ipam.pools_problem and
# network_problem, over the shipped inventory's pillar: fast), then one of each kind through a
# real render, which shows that the state raises them before it lays anything down.


def ipam_module():
    shipped = inventory.load(REPO / "salt" / "inventory.yaml")
    config = {
        "saltyard:cluster:network": shipped.network,
        "saltyard:nodes": shipped.to_dict()["nodes"],
        # pillar/sites/local.sls
        "registry:vip:address": "172.30.0.200",
    }
    return load_module(
        "_modules",
        "saltyard_ipam",
        salt={"config.get": lambda key, default=None: config.get(key, default)},
        grains=dict(GRAINS, id="agent-fat"),
    )


POOL_REFUSALS = [
    pytest.param(
        {"subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "range": None},
        "pool 'tasks' subnet 10.9.0.0/24 is outside the cluster network 172.30.0.0/24",
        id="outside-the-cluster-network",
    ),
    pytest.param(
        {"subnet": "172.30.0.0/16", "range": None},
        "pool 'tasks' subnet 172.30.0.0/16 is outside the cluster network 172.30.0.0/24",
        id="wider-than-the-cluster-network",
    ),
    pytest.param(
        {"range": "172.30.0.21-172.30.0.21"},
        "pool 'tasks' range 172.30.0.21/32 would hand out 172.30.0.21, the address of node "
        "agent-fat",
        id="a-node-address",
    ),
    pytest.param(
        {"range": "172.30.0.128/26"},
        "pool 'tasks' range 172.30.0.128/26 would hand out 172.30.0.140, the address of node lvs1",
        id="the-vm-address",
    ),
    pytest.param(
        {"range": "172.30.0.192/28"},
        "pool 'tasks' range 172.30.0.192/28 would hand out 172.30.0.200, the VIP "
        "registry:vip:address",
        id="the-registry-vip",
    ),
    pytest.param(
        {"range": "172.30.0.96/28"},
        "pool 'tasks' range 172.30.0.96/28 overlaps Docker's ip_range 172.30.0.0/25",
        id="dockers-ip-range",
    ),
    pytest.param(
        {"gateway": "172.30.0.254", "range": "172.30.0.1-172.30.0.2"},
        "pool 'tasks' range 172.30.0.1-172.30.0.2 would hand out 172.30.0.1, the cluster "
        "network's gateway",
        id="the-cluster-gateway",
    ),
    pytest.param(
        {"gateway": "10.0.0.1"},
        "pool 'tasks': gateway 10.0.0.1 is outside its subnet 172.30.0.0/24",
        id="a-gateway-outside-the-subnet",
    ),
    pytest.param(
        {"range": "172.30.1.0/28"},
        "pool 'tasks': range '172.30.1.0/28' is outside its subnet 172.30.0.0/24",
        id="a-range-outside-the-subnet",
    ),
    pytest.param(
        {"rnage": "172.30.0.224/28"},
        "pool 'tasks': unknown key(s) 'rnage'",
        id="a-misspelt-pool-key",
    ),
]


@pytest.mark.parametrize(("change", "message"), POOL_REFUSALS)
def test_a_bad_pool_is_refused_naming_the_value(change, message):
    problem = ipam_module().pools_problem(pools(change)["ipam"]["pools"])
    assert problem is not None and problem.startswith("pillar ipam:pools: "), problem
    assert message in problem


def test_a_pool_overlapping_another_is_refused():
    more = {"name": "more", "subnet": "172.30.0.128/25", "gateway": "172.30.0.129"}
    assert ipam_module().pools_problem([LOCAL_POOL, more]) == (
        "pillar ipam:pools: pool 'more' subnet 172.30.0.128/25 overlaps pool 'tasks' subnet "
        "172.30.0.0/24"
    )
    assert ipam_module().pools_problem([LOCAL_POOL, dict(LOCAL_POOL)]) == (
        "pillar ipam:pools: pool 'tasks' is defined twice"
    )


def test_the_shipped_pool_passes():
    assert ipam_module().pools_problem([LOCAL_POOL]) is None
    network = {"name": "macvlan", "pool": "tasks", "parent": "eth0"}
    assert ipam_module().network_problem(network, [LOCAL_POOL]) is None


NETWORK_REFUSALS = [
    pytest.param(
        {"pool": "nope"},
        "pillar ipam:network:pool 'nope' is not a pool of ipam:pools (tasks)",
        id="a-network-on-no-pool",
    ),
    pytest.param(
        {"parent": "eth9"},
        "pillar ipam:network:parent 'eth9': node agent-fat has no such interface (it has eth0, lo)",
        id="a-parent-the-node-lacks",
    ),
    pytest.param(
        {"parent": "lo"},
        "pillar ipam:network:parent 'lo': the loopback interface cannot be a macvlan parent",
        id="the-loopback-parent",
    ),
    pytest.param(
        {"parent": "eth0; reboot"},
        "pillar ipam:network:parent 'eth0; reboot' is not an interface name",
        id="not-an-interface-name",
    ),
    pytest.param(
        {"name": "mac vlan"},
        "pillar ipam:network:name 'mac vlan': expected a Docker network name",
        id="not-a-network-name",
    ),
]


@pytest.mark.parametrize(("change", "message"), NETWORK_REFUSALS)
def test_a_bad_network_is_refused_naming_the_value(change, message):
    network = dict({"name": "macvlan", "pool": "tasks", "parent": "eth0"}, **change)
    problem = ipam_module().network_problem(network, [LOCAL_POOL])
    assert problem is not None and message in problem, problem


RENDER_REFUSALS = [
    pytest.param(
        pools({"range": "172.30.0.192/28"}),
        "pillar ipam:pools: pool 'tasks' range 172.30.0.192/28 would hand out 172.30.0.200, the "
        "VIP registry:vip:address",
        id="a-pool-rule",
    ),
    pytest.param(
        {"ipam": {"network": {"parent": "eth9"}}},
        "pillar ipam:network:parent 'eth9': node agent-fat has no such interface",
        id="a-network-rule",
    ),
    pytest.param({"ipam": {"pools": []}}, "pillar ipam:pools is empty", id="no-pool"),
    pytest.param(
        {"ipam": {"netwrok": {"parent": "eth0"}}},
        "pillar ipam:netwrok is not a known key",
        id="a-misspelt-key",
    ),
]


@pytest.mark.parametrize(("pillar", "message"), RENDER_REFUSALS)
def test_the_render_refuses_before_anything_is_laid_down(agent, pillar, message):
    with pytest.raises(RenderRefused) as refused:
        agent.show_sls("ipam", pillar=pillar)
    assert message in str(refused.value)


def test_no_interface_holding_the_nodes_address_is_refused(tmp_path):
    grains = {"ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": ["10.1.1.1"]}}
    renderer = StateRenderer(tmp_path, "agent-fat", pillar=SECRETS, grains=grains)
    with pytest.raises(RenderRefused) as refused:
        renderer.show_sls("ipam")
    assert (
        'no interface of node "agent-fat" holds its inventory address "172.30.0.21": set pillar '
        "ipam:network:parent"
    ) in str(refused.value)


def test_no_token_is_refused(tmp_path):
    secrets = dict(SECRETS, consul={"encrypt": "k", "acl": {"tokens": {"agent": "a"}}})
    renderer = StateRenderer(tmp_path, "agent-fat", pillar=secrets, grains=GRAINS)
    with pytest.raises(RenderRefused, match="pillar consul:acl:tokens:ipam is empty"):
        renderer.show_sls("ipam")


# ------------------------------------------------------------------------ the rules themselves


def test_the_shipped_pool_is_clear_of_every_address_of_the_inventory():
    shipped = inventory.load(REPO / "salt" / "inventory.yaml")
    (pool,) = inventory.check_ipam_pools(
        [LOCAL_POOL],
        shipped.network,
        shipped.to_dict()["nodes"],
        {"registry:vip:address": "172.30.0.200"},
    )
    assert (str(pool.first), str(pool.last), pool.size) == ("172.30.0.224", "172.30.0.239", 16)
    used = {n.address for n in shipped.nodes} | {"172.30.0.200", "172.30.0.1"}
    assert not used & {str(a) for a in pool.addresses()}


def test_the_rules_need_the_cluster_network():
    with pytest.raises(ValueError, match="saltyard:cluster:network:subnet is missing"):
        inventory.check_ipam_pools([LOCAL_POOL], {}, [])


# ------------------------------------------------------------------------ the state's own check


def macvlan_state(test: bool):
    """The macvlan_network state over the real execution module. Only interface_problem is
    reached before the refusal: the engine is never asked."""
    module = load_module("_modules", "macvlan_network")
    module.__opts__ = {"test": test}
    salt = {f"macvlan_network.{fn}": getattr(module, fn) for fn in ("interface_problem", "get")}
    return load_module("_states", "macvlan_network", salt=salt, test=test)


@pytest.mark.parametrize("test", [True, False], ids=["test-mode", "applied"])
def test_the_state_refuses_a_parent_the_node_lacks_before_any_change(test):
    state = macvlan_state(test)
    ret = state.present(
        "macvlan",
        parent="nosuch0",
        subnet="172.30.0.0/24",
        gateway="172.30.0.1",
        ipam_options={"pool": "tasks"},
    )
    assert ret["result"] is False and ret["changes"] == {}
    assert "parent interface 'nosuch0' does not exist on this node (it has " in ret["comment"]
    assert "nothing was changed" in ret["comment"]


def test_the_state_refuses_the_loopback_parent():
    ret = macvlan_state(False).present(
        "macvlan", parent="lo", subnet="172.30.0.0/24", gateway="172.30.0.1"
    )
    assert ret["result"] is False
    assert "parent interface 'lo' is a loopback interface" in ret["comment"]


def test_the_secrets_go_to_the_agents_and_the_master_only(tmp_path):
    import importlib.util

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f"ipam_render_{name}", REPO / "_pillar" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    inventory_pillar, secrets = load("saltyard_inventory"), load("saltyard_secrets")

    def tokens(minion: str) -> set[str]:
        base = inventory_pillar.ext_pillar(minion, {}, str(REPO / "salt" / "inventory.yaml"))
        served = secrets.ext_pillar(
            minion, base, str(REPO / "salt" / "secrets.yaml"), str(tmp_path / "store")
        )
        return set(served["consul"]["acl"]["tokens"])

    assert {"ipam"} <= tokens("agent-fat") and "ipam_read" not in tokens("agent-fat")
    assert "ipam_read" in tokens("master") and "ipam" not in tokens("master")
    assert not {"ipam", "ipam_read"} & tokens("lb1")
    # The first consul-server registers both (states/consul/acl.sls).
    assert {"ipam", "ipam_read"} <= tokens("control1")
