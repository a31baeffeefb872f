"""Tests for _pillar/saltyard_inventory.py: called directly and through Salt's pillar compiler."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from saltyard import inventory
from saltyard.release import plan

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "salt" / "inventory.yaml"
MODULE = REPO / "_pillar" / "saltyard_inventory.py"

_serial = itertools.count()


@pytest.fixture
def ext() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"saltyard_unit_pillar_saltyard_inventory_{next(_serial)}", MODULE
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bad_inventory(tmp_path) -> Path:
    """The shipped inventory with one unknown role, so only that is wrong."""
    data = yaml.safe_load(SHIPPED.read_text())
    lvs = next(n for n in data["nodes"] if n["name"] == "lvs1")
    lvs["roles"] = ["webserver"]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- the function itself ---------------------------------------------------------------------


def test_virtual(ext):
    assert ext.__virtual__() == "saltyard_inventory"


def test_agent_pillar(ext):
    pillar = ext.ext_pillar("agent-fat", {}, str(SHIPPED))
    ours = pillar["saltyard"]
    assert ours["node"] == {
        "name": "agent-fat",
        "address": "172.30.0.21",
        "env": "fat",
        "mesos_role": None,
    }
    assert {"mesos-agent", "docker", "kernel", "base"} <= set(ours["roles"])
    assert "salt-master" not in ours["roles"]
    assert ours["cluster"]["domain"] == "saltyard.test"
    assert ours["cluster"]["network"]["subnet"] == "172.30.0.0/24"
    assert ours["cluster"]["environments"] == ["fat", "uat", "prod"]
    names = [n["name"] for n in ours["nodes"]]
    assert len(names) == 12
    assert set(names) == {n.name for n in inventory.load(SHIPPED).nodes}
    master = next(n for n in ours["nodes"] if n["name"] == "master")
    assert master == {
        "name": "master",
        "address": "172.30.0.10",
        "env": None,
        "roles": ["base", "salt-master"],
        "mesos_role": None,
    }


def test_master_pillar(ext):
    ours = ext.ext_pillar("master", {}, str(SHIPPED))["saltyard"]
    assert ours["roles"] == ["base", "salt-master"]
    assert ours["node"]["env"] is None


def test_unknown_minion_refused(ext):
    with pytest.raises(inventory.InventoryError) as excinfo:
        ext.ext_pillar("intruder-7", {}, str(SHIPPED))
    assert "'intruder-7'" in str(excinfo.value)
    assert str(SHIPPED) in str(excinfo.value)


def test_bad_inventory_refused(ext, bad_inventory):
    with pytest.raises(inventory.InventoryError) as excinfo:
        ext.ext_pillar("agent-fat", {}, str(bad_inventory))
    assert "'webserver'" in str(excinfo.value)
    assert "'lvs1'" in str(excinfo.value)


# --- through Salt's pillar compiler ----------------------------------------------------------


def compile_pillar(tmp_path: Path, inventory_path: Path, minion: str = "agent-fat") -> dict:
    """Compile a minion's pillar as the salt-master does: pillar_roots top file plus ext_pillar."""
    import salt.config
    import salt.pillar

    opts = salt.config.DEFAULT_MASTER_OPTS.copy()
    opts.update(
        {
            "cachedir": str(tmp_path / "cache"),
            "pki_dir": str(tmp_path / "pki"),
            "sock_dir": str(tmp_path / "sock"),
            "file_client": "local",
            "pillar_roots": {"base": [str(REPO / "pillar")]},
            "pillar_dirs": [str(REPO / "_pillar")],
            "ext_pillar": [{"saltyard_inventory": str(inventory_path)}],
            "saltyard_site": "local",
            # What the bootstrap writes into the master's configuration (deploy.py).
            "saltyard_master_id": "master",
        }
    )
    pillar = salt.pillar.get_pillar(
        opts, grains={"id": minion, "os_family": "Debian"}, minion_id=minion
    )
    return pillar.compile_pillar()


def test_salt_compiles_pillar(tmp_path):
    pillar = compile_pillar(tmp_path, SHIPPED)
    assert "_errors" not in pillar, pillar.get("_errors")
    ours = pillar["saltyard"]
    assert ours["node"]["name"] == "agent-fat"
    assert ours["node"]["env"] == "fat"
    assert {"mesos-agent", "docker", "kernel", "base"} <= set(ours["roles"])
    # The site pillar (pillar/top.sls -> sites/local.sls) is merged alongside the ext_pillar.
    assert pillar["docker"]["storage_driver"] == "overlay2"


def test_salt_reports_bad_inventory(tmp_path, bad_inventory):
    pillar = compile_pillar(tmp_path, bad_inventory)
    errors = pillar.get("_errors")
    assert errors, "Salt compiled the pillar of a bad inventory without an error"
    text = " ".join(str(e) for e in errors)
    assert "saltyard_inventory" in text
    assert "'webserver'" in text
    # No role reaches the minion from a bad inventory.
    assert "saltyard" not in pillar


def test_salt_reports_unknown_minion(tmp_path):
    pillar = compile_pillar(tmp_path, SHIPPED, minion="intruder-7")
    assert "saltyard" not in pillar
    assert "'intruder-7'" in " ".join(str(e) for e in pillar.get("_errors", []))


def test_members_per_role_in_inventory_order(ext):
    pillar = ext.ext_pillar("agent-fat", {}, str(SHIPPED))["saltyard"]
    agents = [m["name"] for m in pillar["members"]["mesos-agent"]]
    assert agents == ["agent-fat", "agent-uat", "agent-prod", "agent-vm"]
    assert pillar["members"]["zookeeper"] == [{"name": "control1", "address": "172.30.0.11"}]


def test_orchestration_runner_gets_the_masters_pillar(ext):
    # salt-run compiles pillar for "<master id>_master" (state.orchestrate needs the inventory).
    ours = ext.ext_pillar("master_master", {}, str(SHIPPED))["saltyard"]
    assert ours["node"]["name"] == "master"
    assert "salt-master" in ours["roles"]
    with pytest.raises(inventory.InventoryError, match="'control1_master'"):
        ext.ext_pillar("control1_master", {}, str(SHIPPED))


@pytest.mark.parametrize("minion", ["master", "master_master"])
def test_release_data_reaches_the_master_and_its_orchestration(tmp_path, minion):
    pillar = compile_pillar(tmp_path, SHIPPED, minion=minion)
    assert "_errors" not in pillar, pillar.get("_errors")
    hello = pillar["release"]["apps"]["hello"]
    # The data passes the release workflow's own checks against the inventory's environments.
    checked = plan.load_app("hello", hello, list(inventory.load(SHIPPED).environments))
    assert checked.git == f"git://{inventory.load(SHIPPED).master.address}/hello.git"
    assert [step.share for step in checked.steps] == sorted(step.share for step in checked.steps)


@pytest.mark.parametrize("minion", ["agent-fat", "build1", "control1"])
def test_release_data_stays_on_the_master(tmp_path, minion):
    pillar = compile_pillar(tmp_path, SHIPPED, minion=minion)
    assert "_errors" not in pillar, pillar.get("_errors")
    assert "release" not in pillar
