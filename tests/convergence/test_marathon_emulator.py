"""The Marathon-API emulator on control1 (marathon.emulator state), tasks on the agents' engines.

The agents' engines listen on TCP with TLS and accept only client certificates from the
docker-clients CA (issued to control1 alone). The task image is the node image, loaded into every
agent's engine (no registry yet in this test), so placement is decided by the constraint alone.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from saltyard.localcluster import image
from saltyard.localcluster.cluster import container_name

pytestmark = pytest.mark.cluster

TASK_IMAGE = "saltyard-test/web:1"
APP_ID = "/convergence/web-fat"
LABEL = "saltyard.marathon-emulator"


def agents(cluster) -> list[str]:
    return [n.name for n in cluster.nodes if n.has_role("mesos-agent")]


def control(cluster) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


def fat_app(instances: int = 2) -> dict:
    return {
        "id": APP_ID,
        "cmd": "exec python3 -m http.server $PORT0",
        "cpus": 0.1,
        "mem": 64,
        "instances": instances,
        "constraints": [["env", "CLUSTER", "fat"]],
        "container": {
            "type": "DOCKER",
            "docker": {"image": TASK_IMAGE, "network": "BRIDGE"},
            "portMappings": [{"containerPort": 0, "hostPort": 0}],
        },
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": "/",
                "portIndex": 0,
                "intervalSeconds": 2,
                "gracePeriodSeconds": 30,
                "maxConsecutiveFailures": 3,
            }
        ],
    }


def state_ret(cluster, node: str, fun: str, *args: str) -> dict:
    out = cluster.salt([node], "state.single", fun, *args)
    assert node in out, out
    ret = out[node]
    assert isinstance(ret, dict), ret
    (single,) = ret.values()
    return single


@pytest.fixture(scope="module")
def task_image(cluster, converged):
    node_image = image.build()
    for agent in agents(cluster):
        subprocess.run(
            f"docker save {node_image} | docker exec -i {container_name(agent)} docker load -q",
            shell=True,
            check=True,
            capture_output=True,
        )
        cluster.exec(agent, ["docker", "tag", node_image, TASK_IMAGE])
    return TASK_IMAGE


def test_emulator_serves_with_credentials_only(cluster, converged):
    node = control(cluster)
    address = next(n.address for n in cluster.nodes if n.name == node)
    code, out = cluster.exec(node, ["systemctl", "is-active", "saltyard-marathon-emulator"], False)
    assert out.strip() == "active", out
    _, status = cluster.exec(
        node,
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{address}:8080/v2/info"],
    )
    assert status == "401"
    info = cluster.salt([node], "marathon.info")[node]
    assert info["name"] == "marathon", info
    assert info["http_config"]["http_port"] == 8080, info


def test_agent_engines_require_a_docker_client_certificate(cluster, converged):
    """Plain HTTP is refused, and so is a node certificate from the cluster CA: only the
    docker-clients CA opens an engine."""
    agent = next(n for n in cluster.nodes if n.has_role("mesos-agent"))
    other = next(n.name for n in cluster.nodes if n.has_role("lb"))
    url = f"https://{agent.address}:2376/version"
    code, _ = cluster.exec(
        other, ["curl", "-sf", "--max-time", "5", f"http://{agent.address}:2376/version"], False
    )
    assert code != 0
    pillar = cluster.salt([other], "pillar.get", "pki", "unmask=True")[other]
    assert "docker_client" not in pillar
    # Write the node's own cluster certificate to try it as a client.
    script = (
        "import requests,sys;"
        "p=sys.argv[1:];"
        "r=requests.get(p[0],cert=(p[1],p[2]),verify=p[3],timeout=5);print(r.status_code)"
    )
    for name, pem in (
        ("c.pem", pillar["node"]["cert"]),
        ("k.pem", pillar["node"]["key"]),
        ("ca.pem", pillar["ca"]),
    ):
        cluster.salt([other], "file.write", f"/tmp/{name}", f"args={json.dumps([pem])}")
    code, out = cluster.exec(
        other,
        [
            "/opt/saltyard/venv/bin/python",
            "-c",
            script,
            url,
            "/tmp/c.pem",
            "/tmp/k.pem",
            "/tmp/ca.pem",
        ],
        False,
    )
    cluster.exec(other, ["rm", "-f", "/tmp/c.pem", "/tmp/k.pem", "/tmp/ca.pem"])
    assert code != 0 and ("SSL" in out or "certificate" in out), out
    # control1's client certificate works (the emulator's own path).
    node = control(cluster)
    code, out = cluster.exec(
        node,
        [
            "/opt/saltyard/venv/bin/python",
            "-c",
            script,
            url,
            "/etc/saltyard/marathon-emulator/cert.pem",
            "/etc/saltyard/marathon-emulator/key.pem",
            "/etc/saltyard/marathon-emulator/ca.pem",
        ],
    )
    assert out.strip() == "200"


def test_app_to_fat_runs_only_on_the_fat_agent_and_is_healthy(cluster, converged, task_image):
    node = control(cluster)
    app = json.dumps(fat_app())
    predicted = state_ret(
        cluster, node, "marathon_app.present", f"name={APP_ID}", f"app={app}", "test=True"
    )
    assert predicted["result"] is None, predicted
    assert "would be created" in predicted["comment"]
    assert cluster.salt([node], "marathon.exists", APP_ID)[node] is False
    try:
        applied = state_ret(
            cluster, node, "marathon_app.present", f"name={APP_ID}", f"app={app}", "timeout=240"
        )
        assert applied["result"] is True, applied
        tasks = cluster.salt([node], "marathon.tasks", APP_ID)[node]
        assert len(tasks) == 2, tasks
        assert {t["host"] for t in tasks} == {"agent-fat"}, tasks
        for task in tasks:
            assert task["healthCheckResults"] and all(
                h["alive"] for h in task["healthCheckResults"]
            ), task
            # Reachable from the control node on the agent's address, as the health check is.
            code, out = cluster.exec(
                node,
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "5",
                    f"http://172.30.0.21:{task['ports'][0]}/",
                ],
            )
            assert out == "200", out
        # The containers are on agent-fat's engine and nowhere else.
        for agent in agents(cluster):
            _, names = cluster.exec(
                agent, ["docker", "ps", "-q", "--filter", f"label={LABEL}.app-id={APP_ID}"]
            )
            count = len(names.split())
            assert count == (2 if agent == "agent-fat" else 0), (agent, names)
        again = state_ret(cluster, node, "marathon_app.present", f"name={APP_ID}", f"app={app}")
        assert again["result"] is True and not again["changes"], again
    finally:
        gone = state_ret(cluster, node, "marathon_app.absent", f"name={APP_ID}", "force=True")
        assert gone["result"] is True, gone
