"""The whole path in the local cluster: Marathon (the emulator on control1) → the bridge
(discovery) → Consul → consul-template on lb1 → nginx on lb1. An app deployed to fat is reachable
through its virtual host; scaling, a killed task, a bridge restarted mid-change and a Consul agent
restart are followed, a Marathon restart loses no request; an app without health checks is not
routed (docs/bridge.md)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.convergence.helpers import docker_app
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

APP_ID = "/convergence/lbweb"
SERVICE = "convergence-lbweb"  # the bridge's name for the app id
# Each task serves its own Marathon task id, so a response tells which task answered.
CMD = (
    'mkdir -p /tmp/www && cd /tmp/www && printf %s "$MESOS_TASK_ID" > id && '
    "exec python3 -m http.server $PORT0"
)


def web_app(image: str, instances: int, health: bool = True, app_id: str = APP_ID) -> dict:
    check = {"protocol": "HTTP", "path": "/id", "portIndex": 0, "intervalSeconds": 2}
    return docker_app(app_id, image, instances, cmd=CMD, health_check=check if health else None)


@pytest.fixture(scope="module")
def lb(cluster, converged):
    node = next(n for n in cluster.nodes if n.has_role("lb"))
    domain = cluster.pillar(node.name, "saltyard:cluster:domain")
    return node, domain


@pytest.fixture(scope="module")
def marathon(cluster, converged) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


def present(cluster, marathon: str, app: dict) -> None:
    out = cluster.salt(
        [marathon],
        "state.single",
        "marathon_application.present",
        f"name={app['id']}",
        f"app={json.dumps(app)}",
        "timeout=240",
    )[marathon]
    (ret,) = out.values()
    assert ret["result"] is True, ret


def tasks(cluster, marathon: str, app_id: str = APP_ID) -> set[str]:
    return {t["id"] for t in cluster.salt([marathon], "marathon_api.tasks", app_id)[marathon]}


def through_lb(lb, host: str, count: int = 12) -> tuple[set[str], int]:
    """Task ids that answered `count` requests for `host` through lb1's nginx, and the number
    of requests that did not get a 200."""
    node, _ = lb
    seen, failed = set(), 0
    for _ in range(count):
        try:
            r = requests.get(f"http://{node.address}/id", headers={"Host": host}, timeout=5)
        except requests.RequestException:
            failed += 1
            continue
        if r.status_code == 200:
            seen.add(r.text)
        else:
            failed += 1
    return seen, failed


def wait_served_by(lb, host: str, expected: set[str], timeout: float = 60) -> None:
    """Until requests for `host` are answered by exactly the tasks `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        seen, failed = through_lb(lb, host, count=4 * max(len(expected), 1))
        if seen == expected and not failed:
            return
        assert time.monotonic() < deadline, (
            f"{host}: answered by {sorted(seen)} ({failed} failed), expected {sorted(expected)}"
        )
        time.sleep(1)


def wait_tasks(cluster, marathon: str, count: int, timeout: float = 180) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        healthy = {
            t["id"]
            for t in cluster.salt([marathon], "marathon_api.tasks", APP_ID)[marathon]
            if t.get("healthCheckResults") and all(h["alive"] for h in t["healthCheckResults"])
        }
        if len(healthy) == count and len(tasks(cluster, marathon)) == count:
            return healthy
        assert time.monotonic() < deadline, f"{len(healthy)} healthy tasks, expected {count}"
        time.sleep(2)


@pytest.fixture(scope="module")
def web(cluster, marathon, registry_image):
    present(cluster, marathon, web_app(registry_image, 2))
    yield
    cluster.salt(
        [marathon], "state.single", "marathon_application.absent", f"name={APP_ID}", "force=True"
    )


def test_unknown_host_gets_404(lb):
    node, domain = lb
    r = requests.get(f"http://{node.address}/", headers={"Host": f"nosuch.fat.{domain}"}, timeout=5)
    assert r.status_code == 404


def test_app_reachable_and_scaling_followed(cluster, marathon, lb, web, registry_image):
    host = f"{SERVICE}.fat.{lb[1]}"
    wait_served_by(lb, host, wait_tasks(cluster, marathon, 2))
    # Another environment has no such app: the fat app is not served under uat.
    node, domain = lb
    r = requests.get(
        f"http://{node.address}/id", headers={"Host": f"{SERVICE}.uat.{domain}"}, timeout=5
    )
    assert r.status_code == 404
    cluster.salt([marathon], "marathon_api.scale", APP_ID, "3")
    wait_served_by(lb, host, wait_tasks(cluster, marathon, 3))
    cluster.salt([marathon], "marathon_api.scale", APP_ID, "1")
    wait_served_by(lb, host, wait_tasks(cluster, marathon, 1))


def test_killed_task_disappears(cluster, marathon, lb, web):
    host = f"{SERVICE}.fat.{lb[1]}"
    cluster.salt([marathon], "marathon_api.scale", APP_ID, "2")
    before = wait_tasks(cluster, marathon, 2)
    wait_served_by(lb, host, before)
    victim = sorted(before)[0]
    cluster.salt([marathon], "marathon_api.kill_task", APP_ID, victim)
    # Marathon replaces it; the killed task never answers again, the replacement does.
    after = wait_tasks(cluster, marathon, 2)
    assert victim not in after
    wait_served_by(lb, host, after)


def test_bridge_restarted_mid_change_leaves_no_stale_entry(cluster, marathon, lb, web):
    host = f"{SERVICE}.fat.{lb[1]}"
    discovery = next(n.name for n in cluster.nodes if n.has_role("discovery"))
    cluster.salt([marathon], "marathon_api.scale", APP_ID, "3")
    wait_served_by(lb, host, wait_tasks(cluster, marathon, 3))
    # The bridge is down while two tasks go: it must find out on its own when it comes back.
    cluster.exec(discovery, ["systemctl", "kill", "-s", "KILL", "saltyard-bridge"])
    cluster.exec(discovery, ["systemctl", "stop", "saltyard-bridge"])
    try:
        cluster.salt([marathon], "marathon_api.scale", APP_ID, "1")
        remaining = wait_tasks(cluster, marathon, 1)
    finally:
        cluster.exec(discovery, ["systemctl", "start", "saltyard-bridge"])
    wait_served_by(lb, host, remaining, timeout=90)


def test_consul_agent_restart_on_the_lb_recovers(cluster, marathon, lb, web):
    node, domain = lb
    host = f"{SERVICE}.fat.{domain}"
    cluster.exec(node.name, ["systemctl", "restart", "consul"])
    cluster.salt([marathon], "marathon_api.scale", APP_ID, "2")
    wait_served_by(lb, host, wait_tasks(cluster, marathon, 2), timeout=120)


def test_marathon_restart_keeps_the_app_served(cluster, marathon, lb, web):
    """Restarting Marathon (the emulator) forgets every health result until each task's next
    check; the bridge keeps the instances meanwhile (docs/bridge.md, unknown health), so lb1
    answers every request, about 20 a second, through the restart and after it."""
    host = f"{SERVICE}.fat.{lb[1]}"
    cluster.salt([marathon], "marathon_api.scale", APP_ID, "3")
    expected = wait_tasks(cluster, marathon, 3)
    wait_served_by(lb, host, expected)
    cluster.exec(marathon, ["systemctl", "restart", "saltyard-marathon-emulator"])
    answers: dict[int | str, int] = {}
    end = time.monotonic() + 20  # the restart, the bridge's reconnect and a few checks
    while time.monotonic() < end:
        try:
            r = requests.get(f"http://{lb[0].address}/id", headers={"Host": host}, timeout=5)
            key: int | str = r.status_code
        except requests.RequestException as exc:
            key = type(exc).__name__
        answers[key] = answers.get(key, 0) + 1
        time.sleep(0.05)
    assert set(answers) == {200}, answers
    assert answers[200] >= 100, answers
    assert wait_tasks(cluster, marathon, 3) == expected  # the same tasks, adopted


def test_app_without_health_checks_is_not_routed(cluster, marathon, lb, registry_image):
    node, domain = lb
    app_id = "/convergence/lbnocheck"
    present(cluster, marathon, web_app(registry_image, 1, health=False, app_id=app_id))
    try:
        wait_until(lambda: tasks(cluster, marathon, app_id), 120, 2, "the app's task to start")
        # Give the bridge a resync's worth of chances; the vhost must never appear.
        for _ in range(10):
            r = requests.get(
                f"http://{node.address}/id",
                headers={"Host": f"convergence-lbnocheck.fat.{domain}"},
                timeout=5,
            )
            assert r.status_code == 404, r.text
            time.sleep(1)
        _, rendered = cluster.exec(node.name, ["cat", "/etc/nginx/saltyard-lb/apps.conf"])
        assert "convergence-lbnocheck" not in rendered
        assert f"{SERVICE}.fat" in rendered  # the file is live, with the other app in it
        # The bridge says why: skipped, logged and counted (docs/bridge.md).
        discovery = next(n.name for n in cluster.nodes if n.has_role("discovery"))
        _, metrics = cluster.exec(discovery, ["curl", "-sS", "http://127.0.0.1:9158/metrics"])
        assert 'saltyard_bridge_apps_skipped{reason="no_health_checks"} 1' in metrics, metrics
    finally:
        cluster.salt(
            [marathon],
            "state.single",
            "marathon_application.absent",
            f"name={app_id}",
            "force=True",
        )
