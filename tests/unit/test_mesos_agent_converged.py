"""``mesos_agent.converged`` under a real ``salt-call --local``, and orch.mesos_agent_reset's last
step calling it.

The function runs ``state.sls mesos.agent test=True`` itself, so it is run here by Salt, against
a small stand-in ``mesos/agent.sls`` in a temporary file root: one state already in place and one
that would change a file. The orchestration renders with Salt (tests/state_render.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.state_render import StateRenderer, state_args

REPO = Path(__file__).resolve().parents[2]
SALT_CALL = Path(sys.executable).parent / "salt-call"


@pytest.fixture
def minion(tmp_path):
    """A masterless minion whose ``mesos.agent`` manages two files under tmp_path."""
    (tmp_path / "states" / "mesos").mkdir(parents=True)
    (tmp_path / "in-place").write_text("kept\n")
    target = tmp_path / "target"
    sls = {
        "already-in-place": {
            "file.managed": [{"name": str(tmp_path / "in-place")}, {"contents": "kept"}]
        },
        "pending-file": {"file.managed": [{"name": str(target)}, {"contents": "wanted"}]},
    }
    # JSON is YAML: Salt's default renderer reads it as it is.
    (tmp_path / "states" / "mesos" / "agent.sls").write_text(json.dumps(sls))
    conf = tmp_path / "conf"
    conf.mkdir()
    config = {
        "file_client": "local",
        "id": "converged-test",
        "root_dir": str(tmp_path / "root"),
        "pki_dir": str(tmp_path / "pki"),
        "cachedir": str(tmp_path / "cache"),
        "sock_dir": str(tmp_path / "sock"),
        "log_file": str(tmp_path / "minion.log"),
        "file_roots": {"base": [str(tmp_path / "states")]},
        "module_dirs": [str(REPO / "_modules")],
    }
    (conf / "minion").write_text(json.dumps(config))

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SALT_CALL), "--local", "-c", str(conf), "--out=json", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PATH": f"{SALT_CALL.parent}:{os.environ['PATH']}"},
        )

    return call, target


def test_a_predicted_change_fails_names_the_state_and_changes_nothing(minion):
    call, target = minion
    proc = call("mesos_agent.converged")
    assert proc.returncode != 0, proc.stdout
    output = proc.stdout + proc.stderr
    assert "mesos.agent is not converged" in output, output
    assert "pending-file would change" in output, output
    assert "already-in-place" not in output, output
    assert not target.exists()


def test_nothing_to_change_passes(minion):
    call, target = minion
    applied = call("state.sls", "mesos.agent")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert target.read_text() == "wanted\n"
    proc = call("mesos_agent.converged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {"local": {"states": 2}}


def test_a_failing_state_fails(minion, tmp_path):
    call, _ = minion
    sls = tmp_path / "states" / "mesos" / "agent.sls"
    sls.write_text(
        json.dumps(
            {
                "no-source": {
                    "file.managed": [{"name": str(tmp_path / "x")}, {"source": "salt://none"}]
                }
            }
        )
    )
    proc = call("mesos_agent.converged")
    assert proc.returncode != 0, proc.stdout
    assert "no-source fails" in proc.stdout + proc.stderr


def test_the_reset_orchestration_verifies_with_a_test_mode_check(tmp_path):
    rendered = StateRenderer(tmp_path, "master").show_sls(
        "orch.mesos_agent_reset", pillar={"agent": "agent-fat"}
    )
    verify = state_args(rendered, "verify")
    # Not salt.state: that succeeds on predicted changes (test: True) or applies them (without).
    assert verify["fun"] == "salt.function"
    assert verify["name"] == "mesos_agent.converged"
    assert verify["tgt"] == "agent-fat"
    assert {"salt": "up"} in [dict(r) for r in verify["require"]]


def test_an_sls_that_does_not_render_fails(minion, tmp_path):
    call, _ = minion
    (tmp_path / "states" / "mesos" / "agent.sls").write_text("{{ raise('bad pillar value') }}\n")
    proc = call("mesos_agent.converged")
    assert proc.returncode != 0, proc.stdout
    output = proc.stdout + proc.stderr
    assert "mesos.agent did not run in test mode" in output and "bad pillar value" in output, output
