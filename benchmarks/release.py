"""Benchmark: releases of the example app in the local cluster (issue 14), under load through lb1.

    .venv/bin/python benchmarks/release.py [--rate 200] [--window 30]

Needs a converged local cluster (`make up`) with the example app in production already (a
first release, as tests/convergence/test_release.py makes; this script makes one if there is
none). Each release is `salt-run state.orchestrate orch.release` on the master, with the plan of
pillar/release/hello.sls except the canary windows (``--window`` seconds for each of its three
steps). vegeta (an open model: ``--rate`` requests/s whatever the answers take, keep-alive, 5 s
timeout) sends ``GET /`` with the app's production Host to lb1 for the whole of each release.

(a) A good release (a new commit of the example app, a new version): failed requests (goal 0
    of at least 10 000), the release's wall time with a warm build cache (goal <= 5 min with
    three canary steps of 30 s), and the orchestration's own overhead: the wall time minus the
    build, the Marathon deployments and the canary windows (goal <= 10 % of the whole).
(b) A bad release (a commit whose version answers 500 to half its requests): the release is
    rolled back at its first canary step; failed requests (goal: at most the canary's share of
    the window's requests, and none after the rollback), and the gate to rollback: from the
    failing window's end to the last request the canary answered (goal <= 2 s).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.convergence

from saltyard.localcluster import vegeta  # noqa: E402
from saltyard.localcluster.cluster import RELEASE_BASE, Cluster  # noqa: E402
from tests.convergence import release_run  # noqa: E402
from tests.convergence.release_run import APP  # noqa: E402

SHARES = (10, 25, 50)  # pillar/release/hello.sls


def plan(window: int) -> dict:
    return {"canary": {"steps": [{"share": share, "window": window} for share in SHARES]}}


def release(cluster: Cluster, lb: str, version: str, rate: int, window: int, **faults) -> dict:
    sha = release_run.commit(cluster, version, **faults)
    with tempfile.TemporaryDirectory(prefix="saltyard-bench-release-") as tmp:
        load = vegeta.Attack(
            f"{lb}/",
            host=f"{APP}.prod.saltyard.test",
            rate=rate,
            duration=vegeta.MAX_DURATION,
            workdir=Path(tmp),
        )
        started = time.time()
        try:
            code, step = release_run.orchestrate(
                cluster, release_run.release_pillar(version, sha, plan=plan(window))
            )
        finally:
            wall = time.time() - started
            load.stop()
        result = load.result()
    record = release_run.status(cluster)
    return {"code": code, "step": step, "wall": wall, "load": result, "record": record}


def overhead(record: dict, wall: float) -> tuple[float, dict]:
    """The run's own seconds: the wall time minus the build, the Marathon deployments and the
    canary windows (each step's record says how long each took)."""
    steps = {s["name"]: s for s in record["steps"]}
    build = steps["build"]["ended"] - steps["build"]["started"]
    deployments = sum(s["detail"].get("deploy_seconds", 0) for s in steps.values())
    windows = sum(
        w["end"] - w["start"] for s in steps.values() for w in s["detail"].get("windows", [])
    )
    parts = {"build": build, "deployments": deployments, "windows": windows}
    # Each step's own seconds (its span less its deployments and windows): where the overhead is.
    parts["per_step"] = {
        name: round(
            (s["ended"] or s["started"] or 0)
            - (s["started"] or 0)
            - s["detail"].get("deploy_seconds", 0)
            - sum(w["end"] - w["start"] for w in s["detail"].get("windows", [])),
            1,
        )
        for name, s in steps.items()
    }
    return wall - build - deployments - windows, parts


def in_production(lb: str) -> bool:
    """Whether lb1 serves the app in production (a stable app to compare canaries with)."""
    host = f"{APP}.prod.saltyard.test"
    return requests.get(f"{lb}/version", headers={"Host": host}, timeout=5).status_code == 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--window", type=int, default=30)
    args = parser.parse_args()

    cluster = Cluster()
    lb_node = next(n for n in cluster.nodes if n.has_role("lb"))
    lb = f"http://{lb_node.address}"
    print(f"# benchmarks/release.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    cluster.push_node_image(RELEASE_BASE)
    if not in_production(lb):
        print("hello is not in production: a first release (straight to production)")
        first = f"b{int(time.time())}"
        sha = release_run.commit(cluster, first)
        code, step = release_run.orchestrate(cluster, release_run.release_pillar(first, sha))
        if code != 0 or release_run.status(cluster).get("outcome") != "rolled-out":
            print(f"the first release failed: {json.dumps(step)[:2000]}")
            return 1

    stamp = int(time.time())
    good = release(cluster, lb, f"b{stamp}.good", args.rate, args.window)
    load = good["load"]
    ok = good["code"] == 0 and good["record"].get("outcome") == "rolled-out"
    own, parts = overhead(good["record"], good["wall"])
    print(f"(a) good release: {'rolled out' if ok else 'FAILED: ' + json.dumps(good['step'])}")
    print(f"    load: {load.summary()}")
    print(
        f"    wall {good['wall']:.0f} s (goal <= 300 s); build {parts['build']:.0f} s, "
        f"Marathon deployments {parts['deployments']:.0f} s, canary windows "
        f"{parts['windows']:.0f} s; the orchestration's own {own:.0f} s = "
        f"{100 * own / good['wall']:.1f} % (goal <= 10 %)"
    )
    print(f"    each step's own seconds: {json.dumps(parts['per_step'])}")
    print(
        f"    failed requests: {load.failed} of {load.requests} (goal 0 of >= 10 000)"
        + ("" if load.requests >= 10_000 else f"; only {load.requests} sent: raise --rate")
    )

    bad = release(cluster, lb, f"b{stamp}.bad", args.rate, args.window, error_share=0.5)
    load = bad["load"]
    canary = next(s for s in bad["record"]["steps"] if s["name"] == "canary-1")
    if not canary["detail"].get("windows"):
        print(f"(b) bad release: canary-1 judged no window: {json.dumps(canary)[:2000]}")
        return 1
    window = canary["detail"]["windows"][-1]
    in_window = sum(
        1 for f in load.failures if window["start"] - 3 <= f["time"] <= window["end"] + 5
    )
    after = [f for f in load.failures if f["time"] > canary["ended"] + 1]
    allowed = SHARES[0] / 100 * args.rate * (canary["ended"] - canary["started"])
    last_canary = max((f["time"] for f in load.failures), default=None)
    print(f"(b) bad release: {bad['record'].get('outcome')} ({canary['detail'].get('reason')})")
    print(f"    load: {load.summary()}")
    print(
        f"    failed requests {load.failed} ({in_window} around the window), at most "
        f"{allowed:.0f} allowed (the canary's {SHARES[0]} % of the step's requests); "
        f"{len(after)} after the rollback (goal 0)"
    )
    if last_canary is not None:
        late = last_canary - window["end"]
        print(
            f"    gate to rollback: the last failed canary request {late:.2f} s after the "
            "failing window's end (goal <= 2 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
