"""orch.mesos_agent_reset: drain an agent through Mesos maintenance (Marathon moves its tasks),
reset it for an attribute change, bring it back; and its refusal of a bad agent name."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.convergence.helpers import host
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

APP_ID = "/convergence/spread"
CHECKPOINT = "/var/lib/mesos/meta/slaves/latest"


def orchestrate(cluster, agent: str) -> tuple[int, str]:
    master = cluster.inventory.master.name
    return cluster.exec(
        master,
        [
            "salt-run",
            "--out=json",
            "state.orchestrate",
            "orch.mesos_agent_reset",
            f"pillar={json.dumps({'agent': agent})}",
        ],
        check=False,
    )


def orchestration_steps(text: str) -> dict[str, dict]:
    """The steps' results in `salt-run --out=json state.orchestrate` output, by state id (the
    output may carry warnings before the JSON)."""
    start = text.index("{")
    result, _ = json.JSONDecoder().raw_decode(text[start:])
    (steps,) = result["data"].values()
    return {key.split("_|-")[1]: {"key": key, **ret} for key, ret in steps.items()}


def spread_app(image: str) -> dict:
    return {
        "id": APP_ID,
        "cmd": "exec python3 -m http.server $PORT0",
        "cpus": 0.1,
        "mem": 64,
        "instances": 2,
        "constraints": [["env", "LIKE", "uat|prod"]],
        "container": {
            "type": "DOCKER",
            "docker": {"image": image, "network": "BRIDGE"},
            "portMappings": [{"containerPort": 0, "hostPort": 0}],
        },
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 2}],
    }


@pytest.fixture
def two_agents(cluster):
    names = {n.name for n in cluster.nodes if n.has_role("mesos-agent")}
    if not {"agent-uat", "agent-prod"} <= names:
        pytest.skip("needs agent-uat and agent-prod (profile full)")
    return "agent-uat", "agent-prod"


def test_unknown_agent_is_refused(cluster, converged):
    code, out = orchestrate(cluster, "agent-nosuch")
    assert code != 0
    assert "agent-nosuch" in out and "is not a mesos-agent" in out, out


def test_drain_reset_and_back(cluster, converged, registry_image, two_agents):
    drained, other = two_agents
    control = next(n.name for n in cluster.nodes if n.has_role("marathon"))
    app = json.dumps(spread_app(registry_image))
    out = cluster.salt(
        [control],
        "state.single",
        "marathon_app.present",
        f"name={APP_ID}",
        f"app={app}",
        "timeout=240",
    )[control]
    (ret,) = out.values()
    assert ret["result"] is True, ret
    h = host(drained)
    try:
        tasks = cluster.salt([control], "marathon.tasks", APP_ID)[control]
        assert sorted(t["host"] for t in tasks) == sorted([drained, other]), tasks

        # The agent's attributes changed under its checkpoint: a plain run refuses.
        cluster.exec(drained, ["mkdir", "-p", CHECKPOINT])
        cluster.exec(drained, ["sh", "-c", "echo r9 > /etc/mesos-slave/attributes/rack"])
        refused = cluster.salt([drained], "state.sls", "mesos.agent")[drained]
        assert any(
            not r["result"] and "refusing to change" in r["comment"] for r in refused.values()
        ), refused

        code, text = orchestrate(cluster, drained)
        assert code == 0, text
        # The last step checks in test mode and applies nothing: a salt.function step calling
        # mesos_agent.converged, whose return is the count of states it checked (an apply, as
        # salt.state would be, returns state results).
        verify = orchestration_steps(text)["verify"]
        assert verify["key"].endswith("_|-function") and verify["result"] is True, verify
        assert verify["name"] == "mesos_agent.converged", verify
        assert verify["changes"]["ret"][drained]["states"] > 0, verify

        assert not h.file(CHECKPOINT).exists
        assert h.file("/etc/mesos-slave/attributes").listdir() == ["env"]

        # Marathon moved the drained agent's task; both run, healthy, on the other agent.
        def moved():
            tasks = cluster.salt([control], "marathon.tasks", APP_ID)[control]
            healthy = [
                t
                for t in tasks
                if t["healthCheckResults"] and all(c["alive"] for c in t["healthCheckResults"])
            ]
            return [t["host"] for t in healthy] == [other, other] and len(tasks) == 2

        wait_until(moved, 90, 2, f"both tasks healthy on {other}")
        status = cluster.salt([control], "mesos.maintenance_status")[control]
        assert status == {"draining_machines": [], "down_machines": []}, status
    finally:
        cluster.exec(
            drained, ["rm", "-rf", "/var/lib/mesos/meta", "/etc/mesos-slave/attributes/rack"]
        )
        cluster.salt([control], "mesos.up", drained)
        cluster.salt(
            [control], "state.single", "marathon_app.absent", f"name={APP_ID}", "force=True"
        )


def test_converged_check_names_a_pending_change_and_changes_nothing(cluster, converged):
    """What the orchestration's verify step runs: a test-mode mesos.agent that fails on a
    predicted change and leaves it for the next real run."""
    agent = next(n.name for n in cluster.nodes if n.has_role("mesos-agent"))
    flag = "/etc/mesos-slave/executor_registration_timeout"
    original = cluster.exec(agent, ["cat", flag])[1]
    cluster.exec(agent, ["sh", "-c", f"echo 1mins > {flag}"])
    try:
        ret = cluster.salt([agent], "mesos_agent.converged")[agent]
        assert isinstance(ret, str) and "not converged" in ret, ret
        assert "mesos-agent-flag-executor_registration_timeout would change" in ret, ret
        assert cluster.exec(agent, ["cat", flag])[1].strip() == "1mins"
    finally:
        cluster.exec(agent, ["sh", "-c", f"printf %s {shlex.quote(original)} > {flag}"])
    ret = cluster.salt([agent], "mesos_agent.converged")[agent]
    assert isinstance(ret, dict) and ret["states"] > 0, ret
