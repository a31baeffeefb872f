"""Tests for saltyard/inventory.py, the shipped salt/inventory.yaml and the Vagrantfile."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saltyard import inventory
from tests.support.components import require_program

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "salt" / "inventory.yaml"
PYTHON = REPO / ".venv" / "bin" / "python"


# --- the shipped inventory -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> inventory.Inventory:
    return inventory.load(SHIPPED)


def names_with(inv: inventory.Inventory, role: str) -> list[str]:
    return [n.name for n in inv.with_role(role)]


def test_shipped_loads(shipped):
    assert shipped.path == str(SHIPPED)
    assert len(shipped.nodes) == 12
    assert shipped.domain == "saltyard.test"


def test_shipped_has_exactly_one_master(shipped):
    assert names_with(shipped, "salt-master") == ["master"]
    assert shipped.master.name == "master"


def test_shipped_has_a_control_node(shipped):
    control = [
        n
        for n in shipped.nodes
        if {"zookeeper", "consul-server", "mesos-master", "marathon"} <= set(n.roles)
    ]
    assert control, "no node carries zookeeper, consul-server, mesos-master and marathon"


def test_shipped_has_an_agent_per_env(shipped):
    agents = shipped.with_role("mesos-agent")
    assert len(agents) >= 3
    assert {a.env for a in agents} >= {"fat", "uat", "prod"}
    assert shipped.environments == ("fat", "uat", "prod")
    assert all(a.env in shipped.environments for a in agents)


@pytest.mark.parametrize(
    ("role", "at_least"),
    [("registry", 2), ("lvs", 1), ("lb", 1), ("logging", 1), ("build", 1)],
)
def test_shipped_has_role(shipped, role, at_least):
    assert len(shipped.with_role(role)) >= at_least, names_with(shipped, role)


def test_every_profile_includes_the_master(shipped):
    assert {"full", "quick"} <= set(shipped.profiles)
    for name in shipped.profiles:
        assert shipped.master in shipped.profile(name), name


def test_quick_profile_keeps_every_role(shipped):
    full_roles = {r for n in shipped.profile("full") for r in n.all_roles}
    quick_nodes = shipped.profile("quick")
    quick_roles = {r for n in quick_nodes for r in n.all_roles}
    assert full_roles - quick_roles == set()
    assert len(quick_nodes) < len(shipped.nodes)


def test_agent_implied_roles(shipped):
    agent = shipped.node("agent-fat")
    assert agent.roles == ("mesos-agent",)
    assert {"base", "docker", "kernel", "mesos-agent"} <= set(agent.all_roles)
    assert agent.has_role("docker") and agent.has_role("kernel")


def test_master_roles_are_base_and_salt_master_only(shipped):
    assert shipped.master.all_roles == ("base", "salt-master")
    assert not shipped.master.has_role("docker")


def test_expand_roles_is_transitive_and_sorted():
    assert inventory.expand_roles(("build",)) == ("base", "build", "docker", "kernel")
    assert inventory.expand_roles(()) == ("base",)


def test_unknown_node_and_profile(shipped):
    with pytest.raises(inventory.InventoryError, match="'nosuch'"):
        shipped.node("nosuch")
    with pytest.raises(inventory.InventoryError, match="'nosuch'"):
        shipped.profile("nosuch")


# --- bad inventories -------------------------------------------------------------------------

VALID = {
    "cluster": {
        "name": "t",
        "domain": "t.test",
        "network": {"name": "t", "subnet": "10.9.0.0/24"},
    },
    "nodes": [
        {"name": "boss", "address": "10.9.0.10", "roles": ["salt-master"]},
        {"name": "agent1", "address": "10.9.0.21", "roles": ["mesos-agent"], "env": "uat"},
        {"name": "lvs1", "address": "10.9.0.40", "roles": ["lvs"]},
    ],
    "profiles": {"full": "all", "small": ["boss", "agent1"]},
}


def write(tmp_path: Path, data: object, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def valid() -> dict:
    return copy.deepcopy(VALID)


def test_valid_fixture_loads(tmp_path):
    # The base of every bad inventory below is itself valid, so each failure is the one change.
    inv = inventory.load(write(tmp_path, valid()))
    assert [n.name for n in inv.nodes] == ["boss", "agent1", "lvs1"]
    assert [n.name for n in inv.profile("small")] == ["boss", "agent1"]


def test_an_agent_reserved_for_a_role(tmp_path):
    data = valid()
    data["nodes"][1]["mesos_role"] = "slow"
    agent = inventory.load(write(tmp_path, data)).node("agent1")
    assert agent.mesos_role == "slow"
    assert inventory.load(write(tmp_path, valid())).node("agent1").mesos_role is None


def test_environments_default_to_fat_uat_prod(tmp_path):
    inv = inventory.load(write(tmp_path, valid()))
    assert "environments" not in VALID["cluster"]
    assert inv.environments == ("fat", "uat", "prod")
    assert inv.to_dict()["environments"] == ["fat", "uat", "prod"]


def test_custom_environments_in_promotion_order(tmp_path):
    # A site with a staging environment between uat and prod: agents may carry it, and the
    # order (promotion order) is kept as written.
    data = valid()
    data["cluster"]["environments"] = ["fat", "uat", "staging", "prod"]
    data["nodes"].append(
        {"name": "agent2", "address": "10.9.0.22", "roles": ["mesos-agent"], "env": "staging"}
    )
    inv = inventory.load(write(tmp_path, data))
    assert inv.environments == ("fat", "uat", "staging", "prod")
    assert inv.node("agent2").env == "staging"
    assert inv.to_dict()["environments"] == ["fat", "uat", "staging", "prod"]


def test_check_cli_shows_the_environments(tmp_path):
    data = valid()
    data["cluster"]["environments"] = ["uat", "pre", "prod"]
    proc = run_cli("check", str(write(tmp_path, data)))
    assert proc.returncode == 0, proc.stderr
    assert "environments uat -> pre -> prod" in proc.stdout


def unknown_role(d):
    d["nodes"][2]["roles"] = ["lvs", "webserver"]
    return ["'webserver'", "'lvs1'", "unknown role"]


def listed_twice(d):
    d["nodes"].append({"name": "agent1", "address": "10.9.0.22", "roles": ["lvs"]})
    return ["'agent1'", "listed twice"]


def duplicate_address(d):
    d["nodes"][2]["address"] = "10.9.0.21"
    return ["10.9.0.21", "'lvs1'", "'agent1'", "already used"]


def address_outside_subnet(d):
    d["nodes"][2]["address"] = "10.8.0.40"
    return ["10.8.0.40", "'lvs1'", "outside", "10.9.0.0/24"]


def address_not_ip(d):
    d["nodes"][2]["address"] = "10.9.0.400"
    return ["'10.9.0.400'", "'lvs1'", "not an IP address"]


def invalid_name(d):
    d["nodes"][2]["name"] = "Agent_1"
    return ["'Agent_1'", "not a valid host name"]


def unknown_env(d):
    d["nodes"][1]["env"] = "staging"
    return ["'staging'", "'agent1'", "unknown env", "fat, uat, prod"]


def env_outside_custom_environments(d):
    d["cluster"]["environments"] = ["dev", "staging", "live"]
    return ["'uat'", "'agent1'", "unknown env", "dev, staging, live"]


def environments_not_a_list(d):
    d["cluster"]["environments"] = "fat,uat,prod"
    return ["cluster.environments", "'fat,uat,prod'", "non-empty list"]


def environments_empty(d):
    d["cluster"]["environments"] = []
    return ["cluster.environments", "[]", "non-empty list"]


def environment_not_a_dns_label(d):
    d["cluster"]["environments"] = ["uat", "Pre_Prod"]
    return ["cluster.environments", "'Pre_Prod'", "DNS label"]


def environment_listed_twice(d):
    d["cluster"]["environments"] = ["uat", "prod", "uat"]
    return ["cluster.environments", "'uat'", "listed twice"]


def agent_without_env(d):
    del d["nodes"][1]["env"]
    return ["'agent1'", "mesos-agent needs an env"]


def mesos_role_not_on_an_agent(d):
    d["nodes"][2]["mesos_role"] = "slow"
    return ["'lvs1'", "mesos_role 'slow'", "mesos-agent nodes only"]


def mesos_role_not_a_role_name(d):
    d["nodes"][1]["mesos_role"] = "a/b"
    return ["'agent1'", "mesos_role 'a/b'", "not a role"]


def mesos_role_the_unreserved_default(d):
    d["nodes"][1]["mesos_role"] = "*"
    return ["'agent1'", "mesos_role '*'", "unreserved default"]


def no_master(d):
    d["nodes"][0]["roles"] = ["lvs"]
    d["profiles"] = {"full": "all"}
    return ["salt-master", "none"]


def two_masters(d):
    d["nodes"][2]["roles"] = ["salt-master"]
    return ["salt-master", "'boss'", "'lvs1'"]


def profile_unknown_node(d):
    d["profiles"]["small"] = ["boss", "ghost"]
    return ["'small'", "'ghost'", "unknown node"]


def profile_without_master(d):
    d["profiles"]["small"] = ["agent1"]
    return ["'small'", "salt master"]


def unknown_key(d):
    d["nodes"][2]["colour"] = "blue"
    return ["'colour'", "'lvs1'", "unknown keys"]


def missing_roles(d):
    del d["nodes"][2]["roles"]
    return ["'lvs1'", "'roles'"]


def bad_subnet(d):
    d["cluster"]["network"]["subnet"] = "10.9.0.0/33"
    return ["subnet", "10.9.0.0/33"]


def even_zookeeper_ensemble(d):
    d["nodes"][2]["roles"] = ["lvs", "zookeeper"]
    d["nodes"].append({"name": "zk2", "address": "10.9.0.12", "roles": ["zookeeper"]})
    return ["2 nodes", "zookeeper", "'lvs1'"[1:-1], "zk2", "1, 3 or 5"]


@pytest.mark.parametrize(
    "mutate",
    [
        even_zookeeper_ensemble,
        unknown_role,
        listed_twice,
        duplicate_address,
        address_outside_subnet,
        address_not_ip,
        invalid_name,
        unknown_env,
        env_outside_custom_environments,
        environments_not_a_list,
        environments_empty,
        environment_not_a_dns_label,
        environment_listed_twice,
        agent_without_env,
        mesos_role_not_on_an_agent,
        mesos_role_not_a_role_name,
        mesos_role_the_unreserved_default,
        no_master,
        two_masters,
        profile_unknown_node,
        profile_without_master,
        unknown_key,
        missing_roles,
        bad_subnet,
    ],
)
def test_bad_inventory_refused(tmp_path, mutate):
    data = valid()
    expected = mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(inventory.InventoryError) as excinfo:
        inventory.load(path)
    message = str(excinfo.value)
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)


def test_invalid_yaml_refused(tmp_path):
    path = write(tmp_path, "cluster: {name: [unclosed\nnodes: - x\n")
    with pytest.raises(inventory.InventoryError) as excinfo:
        inventory.load(path)
    assert str(path) in str(excinfo.value)
    assert "not valid YAML" in str(excinfo.value)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_not_a_mapping_refused(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(inventory.InventoryError, match="must be a mapping"):
        inventory.load(path)


def test_missing_file_refused(tmp_path):
    path = tmp_path / "nowhere" / "inventory.yaml"
    with pytest.raises(inventory.InventoryError) as excinfo:
        inventory.load(path)
    assert str(path) in str(excinfo.value)
    assert "cannot read" in str(excinfo.value)


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    data = valid()
    unknown_role(data)
    monkeypatch.setenv("SALTYARD_INVENTORY", str(write(tmp_path, data)))
    with pytest.raises(inventory.InventoryError, match="webserver"):
        inventory.load()


# --- the command line ------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    python = str(PYTHON) if PYTHON.exists() else sys.executable
    return subprocess.run(
        [python, "-m", "saltyard.inventory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_check_refuses_bad_inventory(tmp_path):
    data = valid()
    unknown_role(data)
    proc = run_cli("check", str(write(tmp_path, data)))
    assert proc.returncode == 2, proc
    assert "webserver" in proc.stderr
    assert "'lvs1'" in proc.stderr
    assert proc.stdout == ""


def test_cli_check_accepts_shipped():
    proc = run_cli("check", str(SHIPPED))
    assert proc.returncode == 0, proc.stderr
    assert "12 nodes" in proc.stdout


def test_cli_json_profile_quick(shipped):
    proc = run_cli("json", str(SHIPPED), "--profile", "quick")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["selected"] == shipped.profiles["quick"]
    assert data["selected"] == [n.name for n in shipped.profile("quick")]
    assert len(data["nodes"]) == 12
    assert data["network"]["subnet"] == "172.30.0.0/24"


def test_cli_json_unknown_profile():
    proc = run_cli("json", str(SHIPPED), "--profile", "nosuch")
    assert proc.returncode == 2
    assert "'nosuch'" in proc.stderr


# --- the Vagrantfile -------------------------------------------------------------------------


def test_vagrantfile_refuses_bad_inventory(tmp_path):
    require_program("vagrant", "vagrant")
    data = valid()
    unknown_role(data)
    bad = write(tmp_path, data)
    env = {
        **os.environ,
        "SALTYARD_INVENTORY": str(bad),
        "SALTYARD_PYTHON": str(PYTHON),
    }
    # `vagrant status` only evaluates the Vagrantfile and reads state: it changes no container.
    proc = subprocess.run(
        ["vagrant", "status"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0, proc
    assert "webserver" in proc.stdout + proc.stderr


# --- the registry VIP check (states/registry/vip.jinja and the PKI ext_pillar share it) -------


def test_check_vip_accepts_the_sites_vip(shipped):
    network, nodes = shipped.network, shipped.to_dict()["nodes"]
    assert inventory.check_vip("172.30.0.200", network, nodes) == "172.30.0.200"


@pytest.mark.parametrize(
    ("vip", "reason"),
    [
        ("10.9.9.9", "is outside the cluster network 172.30.0.0/24"),
        ("172.30.0.0", "is the network or broadcast address"),
        ("172.30.0.1", "is the cluster network's gateway"),
        ("172.30.0.5", "is inside Docker's ip_range 172.30.0.0/25"),
        ("172.30.0.31", "is the address of node registry1"),
        ("fd00::1", "is not an IPv4 address"),
        (12, "is not an IPv4 address"),
    ],
)
def test_check_vip_names_the_bad_value(shipped, vip, reason):
    network, nodes = shipped.network, shipped.to_dict()["nodes"]
    with pytest.raises(ValueError) as refused:
        inventory.check_vip(vip, network, nodes)
    assert f'pillar registry:vip:address "{vip}" {reason}' in str(refused.value)


def test_check_vip_needs_the_subnet():
    with pytest.raises(ValueError, match="saltyard:cluster:network:subnet is missing"):
        inventory.check_vip("172.30.0.200", {}, [])


def test_registry_module_reads_network_and_nodes_from_pillar(load, shipped):
    network, nodes = shipped.network, shipped.to_dict()["nodes"]
    config = {"saltyard:cluster:network": network, "saltyard:nodes": nodes}
    registry = load("_modules", "registry", salt={"config.get": lambda k, d=None: config.get(k, d)})
    assert registry.vip_problem("172.30.0.200") is None
    assert "is the address of node lvs1" in registry.vip_problem("172.30.0.140")
