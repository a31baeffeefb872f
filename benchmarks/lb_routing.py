"""Benchmark: how fast the lb role follows Marathon, and what scaling costs its clients.

    .venv/bin/python benchmarks/lb_routing.py [--changes 25] [--rate 20] [--seconds 60]

Runs on the host-level stack of tests/lb (tests/lb/lbstack.py): the Marathon-API emulator with
tasks as containers on the host's Docker engine, the bridge, Consul 1.8.7 with ACLs, the real
consul-template (scripts/build-consul-template.sh) and nginx on a loopback port, with the
template, configuration and apply script that states/lb ships. Everything is removed at the end.

(a) Latency from a task becoming healthy to its first request through nginx: the app is scaled
    from 1 to 2 instances ``--changes`` times; t0 is when the emulator's event stream delivers
    ``health_status_changed_event`` with ``alive: true`` for the new task, t1 when a request
    through nginx (``GET /id`` with the app's Host, a fresh connection every 10 ms) is first
    answered by that task. Between changes the app goes back to 1 instance. Goal: p95 <= 1 s.
(b) Failed requests during continuous scaling: a steady ``--rate`` requests/s (each on a fresh
    connection, 5 s timeout) for ``--seconds`` while the app is scaled through 2, 4, 1, 3, 1, 4,
    2 ... instances every 4 s (tasks come and go all the time). A failure is any answer other
    than 200, or no answer. Goal: zero.

    The tasks (``python -m http.server``) die at once on SIGTERM, which Marathon sends when it
    kills a task while nginx still routes to it until the next reload: nginx retries a request
    that fails before its response started, but one whose response had started when its task
    died cannot be retried by any proxy (see docs/lb.md).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.lb, tests.support

from tests.lb import lbstack  # noqa: E402
from tests.support.wait import wait_until as support_wait_until  # noqa: E402

APP = "/lbbench/web"
SERVICE = "lbbench-web"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_until(predicate, timeout: float, message: str, interval: float = 0.05):
    """tests/support's wait_until, polled often (the figures are times) and ending the run."""
    try:
        return support_wait_until(
            predicate, timeout, interval, message, ignore=(requests.RequestException,)
        )
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None


class HealthEvents:
    """Follows the emulator's event stream; records when each task turned healthy."""

    def __init__(self, marathon):
        self.marathon = marathon
        self.alive_at: dict[str, float] = {}
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for event in self.marathon.events(
            ["health_status_changed_event"], read_timeout=600, on_open=self.opened.set
        ):
            if event.data.get("alive") and event.data.get("appId") == APP:
                self.alive_at.setdefault(event.data.get("taskId"), time.monotonic())


def served_ids(stack, host: str, count: int) -> set[str]:
    return {stack.nginx.get(host, "/id").text for _ in range(count)}


def bench_latency(stack, changes: int) -> list[float]:
    host = stack.host(SERVICE)
    events = HealthEvents(stack.marathon)
    events.opened.wait(10)
    latencies = []
    measured: set[str] = set()
    for i in range(changes):
        before = set(stack.helpers.healthy_tasks(stack.marathon, APP)) | measured
        stack.marathon.scale_app(APP, 2, force=True)
        new = wait_until(
            lambda before=before: [t for t in list(events.alive_at) if t not in before],
            60,
            "the new task's health event",
            interval=0.005,
        )[0]
        t0 = events.alive_at[new]
        measured.add(new)
        while True:
            try:
                answer = stack.nginx.get(host, "/id", timeout=2).text
            except requests.RequestException:
                answer = ""
            if answer == new:
                t1 = time.monotonic()
                break
            if time.monotonic() - t0 > 30:
                raise SystemExit(f"task {new} not served through nginx within 30 s")
            time.sleep(0.01)
        latencies.append(t1 - t0)
        print(f"  change {i + 1:2d}: {1000 * (t1 - t0):6.0f} ms", flush=True)
        stack.marathon.scale_app(APP, 1, force=True)
        wait_until(
            lambda: len(stack.nginx.upstream_servers(SERVICE)) == 1
            and len(stack.helpers.healthy_tasks(stack.marathon, APP)) == 1,
            60,
            "back to one instance",
        )
        time.sleep(0.5)
    return latencies


def bench_scaling_load(stack, rate: float, seconds: float) -> dict:
    """Offer ``rate`` requests/s for ``seconds`` (each sent on time by a pool of workers, so
    slow answers do not lower the rate) while scaling the app every 4 s."""
    host = stack.host(SERVICE)
    results: list[tuple[float, int | str]] = []
    backends: set[str] = set()

    def one() -> None:
        t = time.monotonic()
        try:
            response = stack.nginx.get(host, "/id", timeout=5)
            outcome: int | str = response.status_code
            backends.add(response.text)
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        results.append((time.monotonic() - t, outcome))

    def load() -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            start = time.monotonic()
            for n in range(int(rate * seconds)):
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
                pool.submit(one)

    applied_before = len(stack.syslog.matching("applied"))
    started = time.monotonic()
    loader = threading.Thread(target=load)
    loader.start()
    steps = 0
    for instances in itertools.cycle([2, 4, 1, 3, 1, 4, 2, 1]):
        if not loader.is_alive():
            break
        stack.marathon.scale_app(APP, instances, force=True)
        steps += 1
        loader.join(4)
    failures = [o for _, o in results if o != 200]
    times = [d for d, o in results if o == 200]
    return {
        "requests": len(results),
        "seconds": time.monotonic() - started,
        "failures": len(failures),
        "failure_kinds": sorted({str(o) for o in failures}),
        "scale_steps": steps,
        "reloads": len(stack.syslog.matching("applied")) - applied_before,
        "backends": len(backends),
        "p50_ms": 1000 * statistics.median(times) if times else float("nan"),
        "p99_ms": 1000 * percentile(times, 99) if times else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=25, help="(a) scale-ups measured, 0: skip")
    parser.add_argument("--rate", type=float, default=20.0, help="(b) requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="(b) duration")
    args = parser.parse_args()
    if not 1 <= args.rate <= 100 or not 1 <= args.seconds <= 300 or not 0 <= args.changes <= 200:
        parser.error("bounded load only: --rate 1..100, --seconds 1..300, --changes 1..200")

    print(f"lb routing benchmark, {datetime.date.today()}, {platform.node()}")
    with tempfile.TemporaryDirectory(prefix="saltyard-lbbench-") as tmp:
        with lbstack.LbStack(Path(tmp)) as stack:
            lb = stack.lb["consul_template"]
            print(f"consul-template wait min {lb['wait_min']} max {lb['wait_max']}")
            app = lbstack.backend_app(APP, 1)
            stack.marathon.update_app(APP, app, force=True)
            host = stack.host(SERVICE)
            wait_until(lambda: stack.nginx.get(host, "/id").status_code == 200, 60, host)

            if args.changes:
                print(f"(a) healthy -> first request through nginx, {args.changes} changes")
                latencies = bench_latency(stack, args.changes)
                print(
                    f"(a) p50 {1000 * statistics.median(latencies):.0f} ms, "
                    f"p95 {1000 * percentile(latencies, 95):.0f} ms, "
                    f"max {1000 * max(latencies):.0f} ms (goal p95 <= 1000 ms)"
                )

            stack.marathon.scale_app(APP, 2, force=True)
            wait_until(lambda: len(served_ids(stack, host, 4)) == 2, 60, "2 instances")
            print(f"(b) {args.rate:g} req/s for {args.seconds:g} s while scaling every 4 s")
            result = bench_scaling_load(stack, args.rate, args.seconds)
            print(
                f"(b) {result['requests']} requests in {result['seconds']:.0f} s, "
                f"{result['failures']} failed "
                f"{result['failure_kinds'] or ''}, {result['scale_steps']} scaling steps, "
                f"{result['reloads']} nginx reloads, {result['backends']} distinct tasks "
                f"answered, latency p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
                "(goal: 0 failed)"
            )
            errors = [
                line
                for line in (stack.nginx.prefix / "logs" / "error.log").read_text().splitlines()
                if "[error]" in line or "[warn]" in line
            ]
            print(f"nginx error.log: {len(errors)} [error]/[warn] lines (retried or failed)")
            for line in errors[-10:]:
                print("  " + line)
            stack.marathon.delete_app(APP, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
