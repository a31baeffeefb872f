"""Tests for summarise() and HighstateResult in saltyard/localcluster/cluster.py."""

from __future__ import annotations

from saltyard.localcluster.cluster import HighstateResult, summarise

RENDER_ERRORS = [
    "Rendering SLS 'base:docker' failed: Jinja variable 'dict object' has no attribute 'docker'",
    "Pillar failed to render with the following messages:",
]

STATES = {
    "pkg_|-docker-engine_|-docker-ce_|-installed": {
        "__id__": "docker-engine",
        "result": False,
        "comment": "Package docker-ce is not available",
        "changes": {},
    },
    "file_|-daemon-json_|-/etc/docker/daemon.json_|-managed": {
        "__id__": "daemon-json",
        "result": True,
        "comment": "File /etc/docker/daemon.json updated",
        "changes": {"diff": "New file"},
    },
    "service_|-chrony_|-chrony_|-running": {
        "__id__": "chrony",
        "result": True,
        "comment": "The service chrony is already running",
        "changes": {},
    },
}


def test_render_error_list():
    result = summarise("agent-fat", RENDER_ERRORS, seconds=1.5)
    assert isinstance(result, HighstateResult)
    assert result.ok is False
    assert result.errors == RENDER_ERRORS
    assert result.states == 0
    assert result.changed == [] and result.failed == []
    assert result.raw is RENDER_ERRORS
    text = result.describe()
    assert text.startswith("agent-fat: ERROR ")
    assert RENDER_ERRORS[0] in text and RENDER_ERRORS[1] in text


def test_non_dict_non_list_return():
    result = summarise("lb1", "Minion did not return. [Not connected]")
    assert result.ok is False
    assert result.errors == ["Minion did not return. [Not connected]"]


def test_state_returns_counted_and_labelled():
    result = summarise("agent-fat", STATES, seconds=12.34)
    assert result.ok is False
    assert result.states == 3
    assert result.errors == []
    assert result.changed == ["daemon-json (file)"]
    assert result.failed == ["docker-engine (pkg): Package docker-ce is not available"]
    assert result.seconds == 12.34


def test_describe_failure():
    text = summarise("agent-fat", STATES, seconds=12.34).describe()
    assert text.startswith("agent-fat: 3 states, 1 changed")
    assert "1 FAILED" in text
    assert "Package docker-ce is not available" in text
    assert "docker-engine (pkg)" in text
    assert text.endswith("(12.3 s)")


def test_all_good_is_ok():
    good = {k: v for k, v in STATES.items() if v["result"] is not False}
    result = summarise("agent-fat", good)
    assert result.ok is True
    assert result.failed == []
    assert result.changed == ["daemon-json (file)"]
    assert "FAILED" not in result.describe()
    assert "ERROR" not in result.describe()


def test_test_mode_none_result_is_not_a_failure():
    pending = {
        "file_|-daemon-json_|-/etc/docker/daemon.json_|-managed": {
            "__id__": "daemon-json",
            "result": None,
            "comment": "The file would be updated",
            "changes": {"diff": "New file"},
        }
    }
    result = summarise("agent-fat", pending)
    assert result.ok is True
    assert result.changed == ["daemon-json (file)"]


def test_label_falls_back_to_key_without_id():
    ret = {"cmd_|-x_|-true_|-run": {"result": False, "comment": "boom", "changes": {}}}
    result = summarise("log1", ret)
    assert result.failed == ["cmd_|-x_|-true_|-run (cmd): boom"]


def test_non_dict_state_is_an_error():
    ret = {"pkg_|-a_|-a_|-installed": "Conflicting ID 'a'"}
    result = summarise("build1", ret)
    assert result.ok is False
    assert result.errors == ["pkg_|-a_|-a_|-installed: Conflicting ID 'a'"]
    assert "ERROR" in result.describe()
