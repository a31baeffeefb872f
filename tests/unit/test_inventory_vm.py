"""Nodes of kind vm in the inventory: validation, the shipped lvs1, and the Vagrantfile."""

from __future__ import annotations

import copy
import ipaddress
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from saltyard import inventory
from tests.support.components import require_program

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "salt" / "inventory.yaml"
PYTHON = REPO / ".venv" / "bin" / "python"

VALID = {
    "cluster": {
        "name": "t",
        "domain": "t.test",
        "network": {"name": "t", "subnet": "10.9.0.0/24", "ip_range": "10.9.0.0/25"},
    },
    "nodes": [
        {"name": "boss", "address": "10.9.0.10", "roles": ["salt-master"]},
        {"name": "agent1", "address": "10.9.0.21", "roles": ["mesos-agent"], "env": "uat"},
        {"name": "lvs1", "address": "10.9.0.140", "roles": ["lvs"], "kind": "vm"},
    ],
}


def load(tmp_path: Path, data: dict) -> inventory.Inventory:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return inventory.load(path)


def valid() -> dict:
    return copy.deepcopy(VALID)


def refused(tmp_path: Path, data: dict) -> str:
    with pytest.raises(inventory.InventoryError) as excinfo:
        load(tmp_path, data)
    message = str(excinfo.value)
    assert str(tmp_path / "inventory.yaml") in message
    return message


def test_kind_defaults_to_container_and_vm_is_kept(tmp_path):
    inv = load(tmp_path, valid())
    assert [(n.name, n.kind) for n in inv.nodes] == [
        ("boss", "container"),
        ("agent1", "container"),
        ("lvs1", "vm"),
    ]
    assert inv.node("lvs1").is_vm and not inv.node("boss").is_vm
    assert inv.to_dict()["nodes"][2]["kind"] == "vm"


def test_explicit_container_kind(tmp_path):
    data = valid()
    data["nodes"][1]["kind"] = "container"
    assert load(tmp_path, data).node("agent1").kind == "container"


@pytest.mark.parametrize("kind", ["qemu", "VM", "", None, 3])
def test_unknown_kind_refused(tmp_path, kind):
    data = valid()
    data["nodes"][2]["kind"] = kind
    message = refused(tmp_path, data)
    assert f"unknown kind {kind!r}" in message
    assert "'lvs1'" in message
    assert "container, vm" in message


def test_vm_address_inside_ip_range_refused(tmp_path):
    data = valid()
    data["nodes"][2]["address"] = "10.9.0.40"
    message = refused(tmp_path, data)
    for part in ("'lvs1'", "10.9.0.40", "inside", "ip_range", "10.9.0.0/25"):
        assert part in message, (part, message)


def test_container_address_inside_ip_range_is_fine(tmp_path):
    # Containers get fixed addresses from the inventory; only a VM's must stay out of Docker's way.
    data = valid()
    data["nodes"][1]["address"] = "10.9.0.22"
    assert load(tmp_path, data).node("agent1").address == "10.9.0.22"


def test_vm_without_ip_range_refused(tmp_path):
    data = valid()
    del data["cluster"]["network"]["ip_range"]
    message = refused(tmp_path, data)
    assert "'lvs1'" in message and "ip_range" in message


def test_cluster_without_vms_needs_no_ip_range(tmp_path):
    data = valid()
    del data["cluster"]["network"]["ip_range"]
    del data["nodes"][2]["kind"]
    assert load(tmp_path, data).node("lvs1").kind == "container"


@pytest.mark.parametrize(
    ("ip_range", "expected"),
    [("10.9.0.0/33", "10.9.0.0/33"), ("10.8.0.0/25", "not inside the subnet")],
)
def test_bad_ip_range_refused(tmp_path, ip_range, expected):
    data = valid()
    data["cluster"]["network"]["ip_range"] = ip_range
    message = refused(tmp_path, data)
    assert "ip_range" in message and expected in message


# --- the shipped inventory -------------------------------------------------------------------


def test_shipped_vms_lie_outside_dockers_range():
    inv = inventory.load(SHIPPED)
    ip_range = ipaddress.ip_network(inv.network["ip_range"])
    # The lvs role needs the VM's own kernel (IPVS); agent-vm is the agent a kernel rollout
    # reboots (docs/kernel.md), in prod beside agent-prod and reserved for vm-agents.
    # Everything else stays a container.
    assert [n.name for n in inv.nodes if n.is_vm] == ["lvs1", "agent-vm"]
    for name in ("lvs1", "agent-vm"):
        address = ipaddress.ip_address(inv.node(name).address)
        assert address not in ip_range
        assert address in ipaddress.ip_network(inv.network["subnet"])
    agent = inv.node("agent-vm")
    assert agent.env == "prod" and agent.mesos_role == "vm-agents"
    assert [n.name for n in inv.nodes if n.env == "prod"] == ["agent-prod", "agent-vm"]


# --- the Vagrantfile -------------------------------------------------------------------------


def test_vagrantfile_skips_vm_nodes(tmp_path):
    require_program("vagrant", "vagrant")
    data = valid()
    data["profiles"] = {"full": "all"}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "SALTYARD_INVENTORY": str(path), "SALTYARD_PYTHON": str(PYTHON)}
    # `vagrant status` only evaluates the Vagrantfile and reads state: it changes no container.
    proc = subprocess.run(
        ["vagrant", "status", "--machine-readable"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    machines = {line.split(",")[1] for line in proc.stdout.splitlines() if ",state," in line}
    assert machines == {"boss", "agent1"}
