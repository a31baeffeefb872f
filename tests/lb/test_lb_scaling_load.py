"""Scaling under load fails no request (issue 12 item 9): vegeta sends 200 requests/s through
nginx for about 40 s while the app is scaled between 1 and 4 instances with plain PUTs, on the
real stack of tests/lb (emulator with containers, bridge, Consul, consul-template, nginx).

The app honours SIGTERM as docs/lb.md asks (tests/lb/graceful_server.py: keeps serving 2 s, then
exits): the emulator sends TASK_KILLING and SIGTERM together, the bridge takes the task out of
Consul on TASK_KILLING, consul-template re-renders and nginx reloads while the task still
answers. Every answer takes 50 ms, so a killed task always has answers in progress: the same
app exiting at once on SIGTERM (``DRAIN_SECONDS=0``) fails this test with cut answers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from saltyard.localcluster import vegeta
from tests.lb import lbstack
from tests.support import bridge
from tests.support.components import require_file

# Judged under load: after the other host-level tests, past the bring-up's heaviest part
# (tests/support/cluster_warmup.py).
pytestmark = pytest.mark.load

RATE = 200
SECONDS = 40
SEQUENCE = [4, 1, 3, 1, 4, 2]  # 7 tasks killed on the way down


@pytest.fixture(scope="module", autouse=True)
def _needs_vegeta():
    require_file(vegeta.BINARY, "vegeta", "run scripts/build-vegeta.sh")


def test_scaling_under_load_fails_no_request(stack, apps, tmp_path):
    app_id = "/lbtest/scale"
    host = stack.host("lbtest-scale")
    # Every answer takes 50 ms (header at once, body after), so a task always has answers in
    # progress when it is killed. cpus 1 (Docker CPU shares 1024): with the 0.1 of the other
    # tests, a task serving 200 requests/s on a busy machine gets too little CPU, its health
    # checks time out and the bridge takes it out of Consul (404 with one instance).
    # Health checks get 10 s to answer: this test may run beside the convergence suite's first
    # highstate (tests/support/cluster_warmup.py), and one timed-out check takes the lone
    # instance out of nginx (404s), which would judge the machine, not the drain.
    health = {**bridge.web_app(app_id)["healthChecks"][0], "timeoutSeconds": 10}
    apps(
        app_id,
        1,
        graceful=True,
        task_env={"RESPONSE_SECONDS": "0.05"},
        cpus=1,
        healthChecks=[health],
    )
    lbstack.wait_served(stack, host, 1)

    events = lbstack.TaskEvents(stack.marathon, app_id)
    attack = vegeta.Attack(
        stack.nginx.url + "/id", host=host, rate=RATE, duration=SECONDS, workdir=tmp_path
    )
    started = time.monotonic()
    # Changes spread over the load, none in its first or last 2 s.
    interval = (SECONDS - 4) / len(SEQUENCE)
    changes = lbstack.scale_through(stack.marathon, app_id, SEQUENCE, interval, threading.Event())
    result = attack.result()

    nginx_logs = stack.nginx.prefix / "logs"
    access = Path(nginx_logs / "access.log").read_text().splitlines()
    diagnosis = (
        f"{result.summary()}\nerrors: {dict(result.errors.most_common(5))}\n"
        f"first failures: {result.failures[:5]}\n"
        f"changes at {[(round(at - started, 1), n) for at, n in changes]}\n"
        f"events: {events.summary()}\n"
        f"nginx: {lbstack.nginx_problems((nginx_logs / 'error.log').read_text())}\n"
        f"not 200 in access.log: {[line for line in access if ' 200 ' not in line[:40]][:5]}"
    )
    # The scenario happened: every change was made during the load, tasks were killed and
    # replaced while requests flowed, and (nearly) all the requests were sent.
    assert len(changes) == len(SEQUENCE), diagnosis
    assert changes[-1][0] < started + SECONDS, diagnosis
    assert events.count("status_update_event", taskStatus="TASK_KILLING") >= 7, diagnosis
    assert len(result.bodies) >= 5, diagnosis  # distinct tasks answered
    assert result.requests >= 0.95 * RATE * SECONDS, diagnosis
    # The emulator sent TASK_KILLING first and left each task its drain (SIGTERM, 2 s of
    # serving, exit) within the kill grace period (5 s) before TASK_KILLED.
    durations = events.kill_durations()
    assert len(durations) >= 7, diagnosis
    assert all(1.9 <= d <= 5 + 3 for d in durations.values()), (durations, diagnosis)
    # And no request failed.
    assert result.failed == 0, diagnosis
