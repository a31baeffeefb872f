"""Benchmark: the logging pipeline in the local cluster (issue 15), from task containers on the
three agents to the files Flume writes on log1.

    .venv/bin/python benchmarks/log_pipeline.py [--lines 100000] [--rate 10000] [--steady 1000]

Needs a converged local cluster (`make up`). One emitting task per env (tests/convergence/
logging_run.py) writes numbered lines to stdout on a fixed schedule: line i of a burst is due at
start + i / rate whatever the pipeline does (an open model: a slow pipeline does not slow the
offer; the engine's non-blocking buffer takes what the socket cannot).

(a) ``--lines`` lines in all (a third per agent) offered at ``--rate`` lines/s: lost (goal 0),
    duplicates, and the throughput that reached the sink (lines / time until the last arrived).
(b) ``--steady`` lines/s for 30 s: end-to-end latency per line, from the container's write (the
    time in the line) to the line being in the sink file (a follower on log1 polls the files
    every 5 ms; the nodes share the host's clock): p50, p95 (goal <= 2 s), max.
(c) the burst of (a) with Flume restarted half-way: lost (goal 0), duplicates, and how long the
    backlog took to drain after the restart.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.convergence

from saltyard.localcluster.cluster import Cluster  # noqa: E402
from tests.convergence import logging_run  # noqa: E402
from tests.convergence.helpers import push_test_image  # noqa: E402
from tests.convergence.logging_run import APP, APPS_DIR, ENVS, LOG_NODE  # noqa: E402

# Runs on log1: follows the app's files from their current end, and for each line of the run
# records (arrival - written) in seconds; prints the sorted latencies as JSON.
FOLLOWER = r"""
import glob, json, sys, time
run, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pattern = sys.argv[4]
files, latencies, deadline = {}, [], time.time() + timeout
def scan():
    for path in glob.glob(pattern):
        if path not in files:
            f = open(path, "rb")
            f.seek(0, 2)
            files[path] = [f, b""]
scan()
while len(latencies) < count and time.time() < deadline:
    got = False
    for entry in files.values():
        data = entry[0].read()
        if not data:
            continue
        got = True
        now = time.time()
        lines = (entry[1] + data).split(b"\n")
        entry[1] = lines.pop()
        for line in lines:
            fields = line.split()
            if len(fields) > 8 and fields[5] == b"logtest" and fields[6] == run.encode():
                latencies.append(now - float(fields[8]))
    if not got:
        scan()
        time.sleep(0.005)
print(json.dumps(sorted(latencies)))
"""


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def counts_of(cluster, run: str) -> tuple[int, int]:
    """(distinct numbers arrived over all envs, duplicates)."""
    counts = logging_run.arrived(cluster, run)
    distinct = sum(len(c) for c in counts.values())
    return distinct, sum(n - 1 for c in counts.values() for n in c.values())


def burst(cluster, tasks, per_env: int, rate: float, restart_at: float | None = None) -> dict:
    run = uuid.uuid4().hex[:10]
    total = per_env * len(ENVS)
    started = time.time()
    logging_run.start_burst(tasks, run, per_env, rate / len(ENVS))
    restarted = None
    if restart_at is not None:
        time.sleep(restart_at)
        cluster.exec(LOG_NODE, ["systemctl", "restart", "saltyard-flume"])
        restarted = time.time()
    deadline = started + 600
    distinct, duplicates = counts_of(cluster, run)
    while distinct < total and time.time() < deadline:
        time.sleep(1)
        distinct, duplicates = counts_of(cluster, run)
    done = time.time()
    return {
        "run": run,
        "offered": total,
        "lost": total - distinct,
        "duplicates": duplicates,
        "seconds": done - started,
        "drain_after_restart": None if restarted is None else done - restarted,
    }


def steady(cluster, tasks, rate: float, seconds: int) -> list[float]:
    run = uuid.uuid4().hex[:10]
    per_env = int(rate / len(ENVS) * seconds)
    cluster.exec(LOG_NODE, ["sh", "-c", f"cat > /tmp/follow.py <<'EOF'\n{FOLLOWER}\nEOF"])
    pattern = f"{APPS_DIR}/*/{APP}/*.log"
    proc = cluster.engine.containers.get(f"saltyard-{LOG_NODE}")
    # The follower starts first (it reads from the files' current ends), then the burst.
    exec_id = cluster.engine.api.exec_create(
        proc.id,
        ["python3", "/tmp/follow.py", run, str(per_env * len(ENVS)), str(seconds + 60), pattern],
    )["Id"]
    stream = cluster.engine.api.exec_start(exec_id, stream=True, demux=True)
    time.sleep(1)
    logging_run.start_burst(tasks, run, per_env, rate / len(ENVS))
    out = b"".join(chunk[0] or b"" for chunk in stream)
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--steady", type=float, default=1_000)
    args = parser.parse_args()

    cluster = Cluster()
    marathon = next(n.name for n in cluster.nodes if n.has_role("marathon"))
    print(f"# benchmarks/log_pipeline.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    tasks = logging_run.deploy(cluster, marathon, push_test_image(cluster))
    per_env = args.lines // len(ENVS)
    try:
        a = burst(cluster, tasks, per_env, args.rate)
        print(
            f"(a) {a['offered']} lines offered at {args.rate:.0f} lines/s: lost {a['lost']} "
            f"(goal 0), duplicates {a['duplicates']}; all in the sink after {a['seconds']:.1f} s "
            f"= {a['offered'] / a['seconds']:.0f} lines/s reached the sink"
        )
        latencies = steady(cluster, tasks, args.steady, 30)
        print(
            f"(b) {len(latencies)} lines at {args.steady:.0f} lines/s for 30 s, written -> in "
            f"the sink file: p50 {percentile(latencies, 0.5):.3f} s, p95 "
            f"{percentile(latencies, 0.95):.3f} s (goal <= 2 s), max "
            f"{max(latencies, default=float('nan')):.3f} s"
        )
        offer_seconds = args.lines / args.rate
        c = burst(cluster, tasks, per_env, args.rate, restart_at=offer_seconds / 2)
        print(
            f"(c) the same burst, Flume restarted after {offer_seconds / 2:.1f} s: lost "
            f"{c['lost']} (goal 0), duplicates {c['duplicates']}; the backlog drained "
            f"{c['drain_after_restart']:.1f} s after the restart ({c['seconds']:.1f} s in all)"
        )
    finally:
        logging_run.remove(cluster, marathon)
    return 0


if __name__ == "__main__":
    sys.exit(main())
