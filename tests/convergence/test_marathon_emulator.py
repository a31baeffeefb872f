"""The Marathon-API emulator on control1 (marathon.emulator state), tasks on the agents' engines.

The agents' engines listen on TCP with TLS and accept only client certificates from the
docker-clients CA (issued to control1 alone). The task image is in the cluster registry (pushed
by the build node); every agent can pull it, so placement is decided by the constraint alone.
"""

from __future__ import annotations

import json

import pytest

from tests.convergence.helpers import docker_app

pytestmark = pytest.mark.cluster

APP_ID = "/convergence/web-fat"
LABEL = "saltyard.marathon-emulator"


def agents(cluster) -> list[str]:
    return [n.name for n in cluster.nodes if n.has_role("mesos-agent")]


def control(cluster) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


def fat_app(image: str, instances: int = 2) -> dict:
    return docker_app(
        APP_ID,
        image,
        instances,
        health_check={
            "protocol": "HTTP",
            "path": "/",
            "portIndex": 0,
            "intervalSeconds": 2,
            "gracePeriodSeconds": 30,
            "maxConsecutiveFailures": 3,
        },
    )


def state_ret(cluster, node: str, fun: str, *args: str) -> dict:
    out = cluster.salt([node], "state.single", fun, *args)
    assert node in out, out
    ret = out[node]
    assert isinstance(ret, dict), ret
    (single,) = ret.values()
    return single


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
    info = cluster.salt([node], "marathon_api.info")[node]
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
    pillar = cluster.pillar(other, "pki")
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


def test_app_to_fat_runs_only_on_the_fat_agent_and_is_healthy(cluster, converged, registry_image):
    node = control(cluster)
    app = json.dumps(fat_app(registry_image))
    predicted = state_ret(
        cluster, node, "marathon_application.present", f"name={APP_ID}", f"app={app}", "test=True"
    )
    assert predicted["result"] is None, predicted
    assert "would be created" in predicted["comment"]
    assert cluster.salt([node], "marathon_api.exists", APP_ID)[node] is False
    try:
        applied = state_ret(
            cluster,
            node,
            "marathon_application.present",
            f"name={APP_ID}",
            f"app={app}",
            "timeout=240",
        )
        assert applied["result"] is True, applied
        tasks = cluster.salt([node], "marathon_api.tasks", APP_ID)[node]
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
        again = state_ret(
            cluster, node, "marathon_application.present", f"name={APP_ID}", f"app={app}"
        )
        assert again["result"] is True and not again["changes"], again
    finally:
        gone = state_ret(
            cluster, node, "marathon_application.absent", f"name={APP_ID}", "force=True"
        )
        assert gone["result"] is True, gone


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("registry1:5000/saltyard-test/nosuch:1", "does not exist in the cluster registry"),
        ("registry1:5000/saltyard-test/web:no-such-tag", "does not exist in the cluster registry"),
        ("busybox:1.36", "comes from Docker Hub, not from the cluster registry"),
        ("registry.example:5000/web:1", "comes from registry 'registry.example:5000'"),
    ],
)
def test_image_the_registry_lacks_is_refused_before_anything_changes(
    cluster, converged, registry_image, image, reason
):
    node = control(cluster)
    app_id = "/convergence/missing-image"
    app = fat_app(image) | {"id": app_id}
    for extra in ((), ("test=True",)):
        ret = state_ret(
            cluster,
            node,
            "marathon_application.present",
            f"name={app_id}",
            f"app={json.dumps(app)}",
            *extra,
        )
        assert ret["result"] is False, ret
        assert reason in ret["comment"] and image in ret["comment"], ret["comment"]
        assert cluster.salt([node], "marathon_api.exists", app_id)[node] is False


def test_registry_pair_shares_storage(cluster, converged, registry_image):
    """Pushed to registry1, the same manifest digest is served by registry2."""
    node = control(cluster)
    repo, tag = registry_image.split("/", 1)[1].rsplit(":", 1)
    digests = {
        reg.name: cluster.salt(
            [node], "registry.digest", repo, tag, f"url=https://{reg.name}:5000"
        )[node]
        for reg in cluster.nodes
        if reg.has_role("registry")
    }
    assert digests and all(d.startswith("sha256:") for d in digests.values()), digests
    assert len(set(digests.values())) == 1, digests
