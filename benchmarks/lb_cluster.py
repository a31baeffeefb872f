"""Benchmark: the load balancer in the local cluster (issue 13 item 7), through lb1.

    .venv/bin/python benchmarks/lb_cluster.py [--changes 20] [--rate 200] [--seconds 60]

Needs a converged local cluster (`make up`); it does not bring one up. The path is the
production one: the Marathon-API emulator on control1 starts tasks on agent-fat, the bridge on
control1 writes them to Consul, consul-template on lb1 renders nginx's upstreams and the lb
role's apply script reloads nginx. The app is tests/lb/graceful_server.py in the test image
that the convergence tests push through the registry VIP (tests/convergence/helpers.py), with
an HTTP health check every 2 s; it is created with the marathon_application state and removed at
the end.

(a) From a task turning healthy to lb1 serving it: the app is scaled from 1 to 2 instances
    ``--changes`` times. t0 is when this script, attached to the emulator's event stream
    (GET /v2/events from the host), receives ``health_status_changed_event`` with
    ``alive: true`` for the new task; t1 is when a request to lb1 (``GET /id`` with the app's
    Host, a fresh connection every 10 ms) is first answered by that task. Between changes the
    app goes back to 1 instance. Goal: p95 <= 500 ms.
(b) Failed requests while scaling: vegeta (scripts/build-vegeta.sh; an open model, a constant
    ``--rate`` requests/s, keep-alive, 5 s timeout) sends to lb1 for ``--seconds`` while the
    app is scaled through 4, 1, 3, 1, 4, 2 ... instances with plain PUTs (a PUT refused
    because the previous deployment still runs is tried again). A failure is any answer other
    than 200, or none. Goal: 0 failed of at least 10 000.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.convergence, tests.lb

from saltyard.clients.marathon import MarathonClient, MarathonConflict  # noqa: E402
from saltyard.localcluster import vegeta  # noqa: E402
from saltyard.localcluster.cluster import Cluster  # noqa: E402
from tests.convergence.helpers import docker_app, push_test_image  # noqa: E402
from tests.lb import lbstack  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

APP = "/lbbench/cluster"
SERVICE = "lbbench-cluster"
SEQUENCE = [4, 1, 3, 1, 4, 2, 4, 1, 3, 2, 4, 1]


def default(component: str, key: str):
    """A component's default setting (states/COMPONENT/defaults.yaml)."""
    path = REPO / "states" / component / "defaults.yaml"
    return yaml.safe_load(path.read_text())[component][key]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class HealthEvents:
    """Follows the emulator's event stream; records when each task of APP turned healthy."""

    def __init__(self, marathon: MarathonClient):
        self.alive_at: dict[str, float] = {}
        self.opened = threading.Event()
        self._marathon = marathon
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        for event in self._marathon.events(
            ["health_status_changed_event"], read_timeout=600, on_open=self.opened.set
        ):
            if event.data.get("alive") and event.data.get("appId") == APP:
                self.alive_at.setdefault(event.data.get("taskId"), time.monotonic())


def answer(lb_url: str, host: str, timeout: float = 2) -> str:
    """The task id that answers one request through lb1 (a fresh connection), or ''."""
    try:
        r = requests.get(lb_url + "/id", headers={"Host": host}, timeout=timeout)
    except requests.RequestException:
        return ""
    return r.text if r.status_code == 200 else ""


def healthy(marathon: MarathonClient) -> set[str]:
    return {
        t["id"]
        for t in marathon.list_tasks(APP)
        if t.get("healthCheckResults") and all(h["alive"] for h in t["healthCheckResults"])
    }


def served_by_only(lb_url: str, host: str, tasks: set[str], samples: int = 12) -> bool:
    return {answer(lb_url, host) for _ in range(samples)} == tasks


def bench_latency(marathon: MarathonClient, lb_url: str, host: str, changes: int) -> list[float]:
    events = HealthEvents(marathon)
    if not events.opened.wait(15):
        raise SystemExit("the emulator's event stream did not open within 15 s")
    latencies = []
    for i in range(changes):
        before = healthy(marathon) | set(events.alive_at)
        marathon.scale_app(APP, 2, force=True)
        new = wait_until(
            lambda before=before: [t for t in list(events.alive_at) if t not in before],
            120,
            0.005,
            "the new task's health event",
        )[0]
        t0 = events.alive_at[new]
        while answer(lb_url, host) != new:
            if time.monotonic() - t0 > 30:
                raise SystemExit(f"task {new} not served through lb1 within 30 s")
            time.sleep(0.01)
        latencies.append(time.monotonic() - t0)
        print(f"  change {i + 1:2d}: {1000 * latencies[-1]:6.0f} ms", flush=True)
        marathon.scale_app(APP, 1, force=True)
        wait_until(
            lambda: len(healthy(marathon)) == 1 and served_by_only(lb_url, host, healthy(marathon)),
            120,
            0.5,
            "back to one instance served",
        )
    return latencies


def scale_plain(marathon: MarathonClient, instances: int, timeout: float = 60) -> float:
    """A plain PUT; while the previous deployment still holds the app (409), again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            marathon.scale_app(APP, instances)
            return time.monotonic()
        except MarathonConflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def bench_scaling(
    marathon: MarathonClient, lb_url: str, host: str, rate: int, seconds: float, workdir: Path
):
    attack = vegeta.Attack(lb_url + "/id", host=host, rate=rate, duration=seconds, workdir=workdir)
    started = time.monotonic()
    changes = []
    interval = (seconds - 8) / len(SEQUENCE)
    for k, instances in enumerate(SEQUENCE, 1):
        time.sleep(max(0.0, started + k * interval - time.monotonic()))
        if time.monotonic() > started + seconds - 4:
            break
        changes.append((round(scale_plain(marathon, instances) - started, 1), instances))
    return attack.result(), changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20, help="(a) scale-ups measured, 0: skip")
    parser.add_argument("--rate", type=int, default=200, help="(b) requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="(b) duration, 0: skip")
    args = parser.parse_args()
    if not 0 <= args.changes <= 100 or not 1 <= args.rate <= 500:
        parser.error("bounded load only: --changes 0..100, --rate 1..500")
    if args.seconds and not 20 <= args.seconds <= 300:
        parser.error("--seconds 20..300 (or 0 to skip)")
    if args.seconds and not vegeta.BINARY.exists():
        parser.error(f"{vegeta.BINARY} is missing: run scripts/build-vegeta.sh")

    cluster = Cluster(profile=os.environ.get("SALTYARD_TEST_PROFILE", "full"))
    lb = next(n for n in cluster.nodes if n.has_role("lb"))
    control = next(n for n in cluster.nodes if n.has_role("marathon"))
    domain = cluster.pillar(lb.name, "saltyard:cluster:domain")
    password = cluster.pillar(control.name, "marathon:http_credentials:password")
    user = cluster.pillar(control.name, "marathon:http_credentials:user")
    # Pillar holds what a site overrides; the rest comes from the component's defaults.yaml.
    port = cluster.pillar(control.name, "marathon:http_port") or default("marathon", "http_port")
    if not (domain and password and user and port):
        raise SystemExit("no converged local cluster answers (run `make up` first)")
    marathon = MarathonClient(f"http://{control.address}:{port}", auth=(user, password))
    lb_url = f"http://{lb.address}"
    host = f"{SERVICE}.fat.{domain}"
    cores = os.cpu_count()
    print(f"lb benchmark in the local cluster, {datetime.date.today()}, {cores} cores")
    ct = default("lb", "consul_template") | (cluster.pillar(lb.name, "lb:consul_template") or {})
    print(f"consul-template wait min {ct.get('wait_min')} max {ct.get('wait_max')}")

    image = push_test_image(cluster)
    app = docker_app(
        APP,
        image,
        1,
        cmd='exec python3 -c "$SALTYARD_TEST_SERVER"',
        health_check={"protocol": "HTTP", "path": "/id", "portIndex": 0, "intervalSeconds": 2},
    )
    app["env"] = {
        "SALTYARD_TEST_SERVER": lbstack.GRACEFUL_SERVER.read_text(),
        "RESPONSE_SECONDS": "0.05",
    }
    app["taskKillGracePeriodSeconds"] = 5
    app["cpus"] = 1
    created = cluster.salt(
        [control.name],
        "state.single",
        "marathon_application.present",
        f"name={APP}",
        f"app={json.dumps(app)}",
        "timeout=240",
    )[control.name]
    (ret,) = created.values()
    if ret["result"] is not True:
        raise SystemExit(f"the app could not be created: {ret['comment']}")
    ok = True
    try:
        wait_until(lambda: answer(lb_url, host), 120, 0.5, f"{host} served by lb1")
        if args.changes:
            print(f"(a) healthy -> served by lb1, {args.changes} scale-ups 1 -> 2:")
            lat = bench_latency(marathon, lb_url, host, args.changes)
            p95 = percentile(lat, 95)
            print(
                f"(a) p50 {1000 * statistics.median(lat):.0f} ms, p95 {1000 * p95:.0f} ms, "
                f"max {1000 * max(lat):.0f} ms over {len(lat)} scale-ups; goal p95 <= 500 ms: "
                + ("met" if p95 <= 0.5 else "MISSED")
            )
            ok &= p95 <= 0.5
        if args.seconds:
            print(f"(b) {args.rate} requests/s for {args.seconds:.0f} s through lb1, scaling:")
            with tempfile.TemporaryDirectory(prefix="saltyard-lbcluster-") as tmp:
                result, changes = bench_scaling(
                    marathon, lb_url, host, args.rate, args.seconds, Path(tmp)
                )
            print(f"    changes (s, instances): {changes}")
            print(f"    {result.summary()}; {len(result.bodies)} tasks answered")
            if result.failed:
                print(f"    errors: {dict(result.errors.most_common(5))}")
            met = result.failed == 0 and result.requests >= 10_000
            print(
                f"(b) {result.failed} failed of {result.requests}; goal 0 of at least 10 000: "
                + ("met" if met else "MISSED")
            )
            ok &= met
    finally:
        cluster.salt(
            [control.name],
            "state.single",
            "marathon_application.absent",
            f"name={APP}",
            "force=True",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
