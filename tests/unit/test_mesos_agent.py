"""The mesos_agent module and state against real files in a temporary folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(path: Path, name: str, **dunders):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key, value in dunders.items():
        setattr(module, key, value)
    return module


@pytest.fixture
def module():
    return load(REPO / "_modules" / "mesos_agent.py", "saltyard_test_mesos_agent_module")


@pytest.fixture
def state(module):
    def make(test=False):
        salt = {
            f"mesos_agent.{fn}": getattr(module, fn)
            for fn in (
                "attributes",
                "checkpoint",
                "write_attributes",
                "reset_checkpoint",
                "default_role",
                "write_default_role",
            )
        }
        return load(
            REPO / "_states" / "mesos_agent.py",
            "saltyard_test_mesos_agent_state",
            __salt__=salt,
            __opts__={"test": test},
        )

    return make


def test_first_write_creates_the_files(tmp_path, state):
    attrs = tmp_path / "attributes"
    ret = state().attributes(str(attrs), {"env": "fat"}, work_dir=str(tmp_path / "work"))
    assert ret["result"] is True
    assert ret["changes"] == {"old": {}, "new": {"env": "fat"}}
    assert (attrs / "env").read_text() == "fat\n"


def test_unchanged_attributes_report_no_changes(tmp_path, state):
    attrs = tmp_path / "attributes"
    state().attributes(str(attrs), {"env": "fat"}, work_dir=str(tmp_path / "work"))
    ret = state().attributes(str(attrs), {"env": "fat"}, work_dir=str(tmp_path / "work"))
    assert ret["result"] is True and ret["changes"] == {}


def test_change_under_a_checkpoint_is_refused_and_changes_nothing(tmp_path, state):
    attrs, work = tmp_path / "attributes", tmp_path / "work"
    state().attributes(str(attrs), {"env": "fat"}, work_dir=str(work))
    (work / "meta" / "slaves" / "latest").mkdir(parents=True)
    for test in (False, True):
        ret = state(test).attributes(str(attrs), {"env": "uat"}, work_dir=str(work))
        assert ret["result"] is False
        assert "env: fat -> uat" in ret["comment"]
        assert "Incompatible agent info" in ret["comment"]
        assert ret["changes"] == {}
    assert (attrs / "env").read_text() == "fat\n"
    assert (work / "meta" / "slaves" / "latest").exists()


def test_change_without_a_checkpoint_is_applied(tmp_path, state):
    attrs, work = tmp_path / "attributes", tmp_path / "work"
    state().attributes(str(attrs), {"env": "fat", "rack": "r1"}, work_dir=str(work))
    ret = state().attributes(str(attrs), {"env": "uat"}, work_dir=str(work))
    assert ret["result"] is True
    assert sorted(p.name for p in attrs.iterdir()) == ["env"]
    assert (attrs / "env").read_text() == "uat\n"


def test_reset_removes_the_checkpoint_then_writes(tmp_path, state):
    attrs, work = tmp_path / "attributes", tmp_path / "work"
    state().attributes(str(attrs), {"env": "fat"}, work_dir=str(work))
    latest = work / "meta" / "slaves" / "latest"
    latest.mkdir(parents=True)
    predicted = state(True).attributes(str(attrs), {"env": "uat"}, str(work), reset=True)
    assert predicted["result"] is None and latest.exists()
    assert predicted["changes"]["checkpoint_removed"] == str(latest)
    ret = state().attributes(str(attrs), {"env": "uat"}, work_dir=str(work), reset=True)
    assert ret["result"] is True
    assert not latest.exists()
    assert (attrs / "env").read_text() == "uat\n"


@pytest.mark.parametrize(
    "bad, named",
    [({"en:v": "x"}, "'en:v'"), ({"env": "a;b"}, "'a;b'"), ({"": "x"}, "''")],
)
def test_invalid_attribute_names_and_values_are_refused(tmp_path, module, bad, named):
    from salt.exceptions import CommandExecutionError

    with pytest.raises(CommandExecutionError) as exc:
        module.write_attributes(bad, str(tmp_path / "attributes"))
    assert named in str(exc.value)
    assert not (tmp_path / "attributes").exists()


def checkpointed(work: Path) -> Path:
    latest = work / "meta" / "slaves" / "latest"
    latest.mkdir(parents=True)
    return latest


def test_a_reservation_is_written_predicted_and_kept(tmp_path, state):
    role_file, work = tmp_path / "flags" / "default_role", tmp_path / "work"
    predicted = state(test=True).reservation(str(role_file), "vm-agents", work_dir=str(work))
    assert predicted["result"] is None and not role_file.exists()
    assert predicted["changes"] == {"old": None, "new": "vm-agents"}
    ret = state().reservation(str(role_file), "vm-agents", work_dir=str(work))
    assert ret["result"] is True and role_file.read_text() == "vm-agents\n"
    again = state().reservation(str(role_file), "vm-agents", work_dir=str(work))
    assert again["result"] is True and again["changes"] == {}
    # Unreserved (None): no file, and nothing to do when there is none.
    assert state().reservation(str(tmp_path / "none"), None, work_dir=str(work))["changes"] == {}


def test_another_role_under_a_checkpoint_is_refused_unless_reset(tmp_path, state, module):
    role_file, work = tmp_path / "default_role", tmp_path / "work"
    module.write_default_role("vm-agents", str(role_file))
    latest = checkpointed(work)
    ret = state().reservation(str(role_file), None, work_dir=str(work))
    assert ret["result"] is False and ret["changes"] == {}
    assert "refusing to change the Mesos agent's reservation" in ret["comment"]
    assert "reserved for 'vm-agents' -> unreserved ('*')" in ret["comment"]
    assert role_file.read_text() == "vm-agents\n" and latest.exists()
    ret = state().reservation(str(role_file), None, work_dir=str(work), reset=True)
    assert ret["result"] is True and ret["changes"]["checkpoint_removed"] == str(latest)
    assert not role_file.exists() and not latest.exists()


def test_a_bad_role_is_refused_by_the_module(tmp_path, module):
    for bad in ("*", "a/b", " x"):
        with pytest.raises(Exception, match="invalid Mesos role"):
            module.write_default_role(bad, str(tmp_path / "default_role"))
    assert not (tmp_path / "default_role").exists()
