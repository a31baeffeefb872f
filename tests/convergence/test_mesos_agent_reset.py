"""orch.mesos_agent_reset: drain an agent through Mesos maintenance (Marathon moves its tasks),
reset it for an attribute change, bring it back; and its refusal of a bad agent name."""

from __future__ import annotations

import json
import time

import pytest

from tests.convergence.helpers import host

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

        deadline = time.monotonic() + 90
        while not moved():
            assert time.monotonic() < deadline, cluster.salt([control], "marathon.tasks", APP_ID)
            time.sleep(2)
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
