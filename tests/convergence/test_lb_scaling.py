"""Scaling under load through lb1 fails no request (issue 12 item 9), in the local cluster: vegeta
on the host sends 200 requests/s for 40 s to lb1's nginx (`Host: <app>.fat.<domain>`) while the
app is scaled between 1 and 4 instances with plain PUTs (marathon_api.scale, no force) on control1.

The path is the production one: the emulator on control1 sends TASK_KILLING and SIGTERM to a
task on agent-fat, the bridge takes it out of Consul, consul-template on lb1 re-renders nginx,
and the task (tests/lb/graceful_server.py, as docs/lb.md asks of applications) keeps serving
2 s after SIGTERM. tests/lb/test_lb_scaling_load.py runs the same scenario on the host stack.
"""

from __future__ import annotations

import json
import time

import pytest

from saltyard.localcluster import vegeta
from tests.convergence.helpers import docker_app
from tests.lb import lbstack
from tests.support.components import require_file

pytestmark = pytest.mark.cluster

APP_ID = "/convergence/scaling"
RATE = 200
SECONDS = 40
SEQUENCE = [4, 1, 3, 1, 4, 2]  # 7 tasks killed on the way down


def scale(cluster, marathon: str, instances: int, timeout: float = 60) -> float:
    """A plain PUT of the instance count; while the previous deployment still holds the app
    (Marathon's 409), try again. Returns when Marathon accepted it."""
    deadline = time.monotonic() + timeout
    while True:
        out = cluster.salt([marathon], "marathon_api.scale", APP_ID, str(instances))[marathon]
        if isinstance(out, dict) and out.get("deploymentId"):
            return time.monotonic()
        assert "409" in str(out) or "locked" in str(out), out
        assert time.monotonic() < deadline, out
        time.sleep(0.5)


def test_scaling_under_load_through_lb1_fails_no_request(
    cluster, converged, registry_image, tmp_path
):
    require_file(vegeta.BINARY, "vegeta", "run scripts/build-vegeta.sh")
    lb = next(n for n in cluster.nodes if n.has_role("lb"))
    marathon = next(n.name for n in cluster.nodes if n.has_role("marathon"))
    domain = cluster.pillar(lb.name, "saltyard:cluster:domain")
    host = f"convergence-scaling.fat.{domain}"
    app = docker_app(
        APP_ID,
        registry_image,
        1,
        cmd='exec python3 -c "$SALTYARD_TEST_SERVER"',
        health_check={"protocol": "HTTP", "path": "/id", "portIndex": 0, "intervalSeconds": 2},
    )
    # Every answer takes 50 ms, so a killed task has answers in progress; a kill grace period
    # above the server's 2 s drain; a whole CPU so that 200 requests/s never starve its checks.
    app["env"] = {
        "SALTYARD_TEST_SERVER": lbstack.GRACEFUL_SERVER.read_text(),
        "RESPONSE_SECONDS": "0.05",
    }
    app["taskKillGracePeriodSeconds"] = 5
    app["cpus"] = 1
    created = cluster.salt(
        [marathon],
        "state.single",
        "marathon_application.present",
        f"name={APP_ID}",
        f"app={json.dumps(app)}",
        "timeout=240",
    )[marathon]
    (ret,) = created.values()
    assert ret["result"] is True, ret
    try:
        # Served through lb1 before the load starts.
        deadline = time.monotonic() + 90
        while True:
            probe = vegeta.attack(
                f"http://{lb.address}/id", host=host, rate=10, duration=1, workdir=tmp_path
            )
            if probe.status_codes.get(200) == probe.requests:
                break
            assert time.monotonic() < deadline, probe.summary()
            time.sleep(1)

        attack = vegeta.Attack(
            f"http://{lb.address}/id", host=host, rate=RATE, duration=SECONDS, workdir=tmp_path
        )
        started = time.monotonic()
        changes = []
        # One change every `interval` from the start of the load, the last well before its end
        # (a change through the salt CLI takes a second or two).
        interval = (SECONDS - 8) / len(SEQUENCE)
        for k, instances in enumerate(SEQUENCE, 1):
            time.sleep(max(0.0, started + k * interval - time.monotonic()))
            changes.append((round(scale(cluster, marathon, instances) - started, 1), instances))
        result = attack.result()
    finally:
        cluster.salt(
            [marathon],
            "state.single",
            "marathon_application.absent",
            f"name={APP_ID}",
            "force=True",
        )
    diagnosis = (
        f"{result.summary()}\nerrors: {dict(result.errors.most_common(5))}\n"
        f"first failures: {result.failures[:5]}\nchanges at {changes}"
    )
    # The scenario happened: every change during the load, several tasks answered, (nearly)
    # every request sent; and not one failed.
    assert len(changes) == len(SEQUENCE) and changes[-1][0] < SECONDS, diagnosis
    assert len(result.bodies) >= 4, diagnosis
    assert result.requests >= 0.95 * RATE * SECONDS, diagnosis
    assert result.status_codes == {200: result.requests}, diagnosis
