"""orch.mesos_agent_reset: drain an agent (its tasks moved elsewhere one at a time, then the
machine DOWN), reset it for an attribute change, bring it back; its refusal of a bad agent name;
and the drain's refusal, before any change, of an agent whose tasks have nowhere else to go.

The local cluster has one agent per env, so an app pinned to the drained agent's env (``env
CLUSTER uat``) has nowhere to go: the run refuses unless its pillar says ``accept_downtime``.
The app that can move (``env LIKE uat|prod``) moves to agent-prod before the agent goes DOWN."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.convergence.helpers import host, orchestration_steps
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

APP_ID = "/convergence/spread"
PINNED_ID = "/convergence/pinned-uat"
CHECKPOINT = "/var/lib/mesos/meta/slaves/latest"


def orchestrate(cluster, agent: str, **pillar) -> tuple[int, str]:
    master = cluster.inventory.master.name
    return cluster.exec(
        master,
        [
            "salt-run",
            "--out=json",
            "state.orchestrate",
            "orch.mesos_agent_reset",
            f"pillar={json.dumps({'agent': agent, **pillar})}",
        ],
        check=False,
    )


def spread_app(image: str, app_id: str = APP_ID, instances: int = 2, constraint=None) -> dict:
    return {
        "id": app_id,
        "cmd": "exec python3 -m http.server $PORT0",
        "cpus": 0.1,
        "mem": 64,
        "instances": instances,
        "constraints": [constraint or ["env", "LIKE", "uat|prod"]],
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


def present(cluster, control: str, app: dict) -> None:
    out = cluster.salt(
        [control],
        "state.single",
        "marathon_application.present",
        f"name={app['id']}",
        f"app={json.dumps(app)}",
        "timeout=240",
    )[control]
    (ret,) = out.values()
    assert ret["result"] is True, ret


def test_drain_reset_and_back(cluster, converged, registry_image, two_agents):
    drained, other = two_agents
    control = next(n.name for n in cluster.nodes if n.has_role("marathon"))
    present(cluster, control, spread_app(registry_image))
    pinned = spread_app(registry_image, PINNED_ID, 1, ["env", "CLUSTER", "uat"])
    present(cluster, control, pinned)
    h = host(drained)
    try:
        tasks = cluster.salt([control], "marathon_api.tasks", APP_ID)[control]
        assert sorted(t["host"] for t in tasks) == sorted([drained, other]), tasks

        def ours() -> dict[str, str]:
            # Only this test's apps: others' tasks may come and go meanwhile.
            return {
                t["id"]: t["host"]
                for app_id in (APP_ID, PINNED_ID)
                for t in cluster.salt([control], "marathon_api.tasks", app_id)[control]
            }

        placed = ours()
        assert sorted(placed.values()) == sorted([drained, drained, other]), placed

        # Nowhere to go for the pinned app (agent-uat is the only uat agent): refused before
        # any change, the run stopped at the drain.
        code, text = orchestrate(cluster, drained)
        assert code != 0, text
        assert f"refusing to drain {drained}" in text and PINNED_ID in text, text
        assert "accept_downtime" in text, text
        steps = orchestration_steps(text)
        assert steps["drain"]["result"] is False, steps["drain"]
        assert steps["reset"]["result"] is False and not steps["reset"]["changes"], steps
        status = cluster.salt([control], "mesos.maintenance_status")[control]
        assert status == {"draining_machines": [], "down_machines": []}, status
        assert ours() == placed

        # The agent's attributes changed under its checkpoint: a plain run refuses.
        cluster.exec(drained, ["mkdir", "-p", CHECKPOINT])
        cluster.exec(drained, ["sh", "-c", "echo r9 > /etc/mesos-slave/attributes/rack"])
        refused = cluster.salt([drained], "state.sls", "mesos.agent")[drained]
        assert any(
            not r["result"] and "refusing to change" in r["comment"] for r in refused.values()
        ), refused

        code, text = orchestrate(cluster, drained, accept_downtime=True)
        assert code == 0, text
        # The drain moved the spread app's task (started its replacement on the other agent
        # first) and stopped the pinned one's, whose downtime this run accepted.
        report = orchestration_steps(text)["drain"]["changes"]["ret"][control]
        spread_moves = [m for m in report["moved"] if m["app"] == APP_ID]
        assert len(spread_moves) == 1 and spread_moves[0]["to"] == other, report
        assert PINNED_ID in report["downtime_accepted"], report
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
            tasks = cluster.salt([control], "marathon_api.tasks", APP_ID)[control]
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
        for app_id in (APP_ID, PINNED_ID):
            cluster.salt(
                [control],
                "state.single",
                "marathon_application.absent",
                f"name={app_id}",
                "force=True",
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
