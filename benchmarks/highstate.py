"""Benchmark: a fresh highstate per role, and an idempotent highstate per node.

    .venv/bin/python benchmarks/highstate.py [--profile full] [--output docs/benchmarks.md]

Needs a local cluster whose nodes have not been highstated yet, so it brings one up itself
(`saltyard cluster down`, then `up` without the highstate). Nodes run one at a time, so a figure
is one node's, not the machine's share of eleven.

"Fresh, packages cached": the role's packages are fetched into the node's apt cache first (the
package list comes from a test-mode highstate), then the highstate is timed; the download from
the Debian mirror is reported separately. Goals (issue 2): fresh role <= 120 s, idempotent
highstate <= 5 s per node.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import statistics
import sys
import time

from saltyard.localcluster.cluster import Cluster

PKG_PREDICTION = re.compile(r"would be installed/updated: (.+)$")
# Roles that carry states today (states/top.sls); nodes with the same set converge the same way.
STATE_ROLES = ("base", "kernel", "docker", "zookeeper", "mesos-master", "mesos-agent", "marathon")


def timed(fn):
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def predicted_packages(result) -> list[str]:
    packages = []
    for state in result.raw.values():
        if not state.get("__id__") or state["result"] is not None:
            continue
        match = PKG_PREDICTION.search(state.get("comment", ""))
        if match:
            packages += [p.strip() for p in match.group(1).split(",")]
    return packages


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="full")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    parser.add_argument("--repeat", type=int, default=3, help="idempotent runs per node")
    args = parser.parse_args()

    cluster = Cluster(profile=args.profile)
    cluster.down()
    cluster.up(highstate=False)

    groups: dict[tuple[str, ...], list[str]] = {}
    for node in cluster.nodes:
        key = tuple(r for r in STATE_ROLES if node.has_role(r))
        groups.setdefault(key, []).append(node.name)

    fresh_rows = []
    for roles, nodes in groups.items():
        node = nodes[0]
        predicted = cluster.highstate([node], "test=True")[node]
        packages = predicted_packages(predicted)
        _, download = timed(
            lambda n=node, p=packages: cluster.salt(
                [n], "pkg.install", f"pkgs={json.dumps(p)}", "downloadonly=True"
            )
        )
        result, seconds = timed(lambda n=node: cluster.highstate([n])[n])
        if not result.ok:
            print(result.describe(), file=sys.stderr)
            return 1
        fresh_rows.append((", ".join(roles), node, seconds, download, len(result.changed)))
        print(f"fresh {node} ({', '.join(roles)}): {seconds:.1f} s", file=sys.stderr)

    # Converge the rest, then time idempotent runs node by node.
    rest = [n.name for n in cluster.nodes if n.name not in {r[1] for r in fresh_rows}]
    if rest:
        failed = [r.describe() for r in cluster.highstate(rest).values() if not r.ok]
        if failed:
            print("\n".join(failed), file=sys.stderr)
            return 1
    idem_rows = []
    for node in cluster.nodes:
        runs = []
        for _ in range(args.repeat):
            result, seconds = timed(lambda n=node.name: cluster.highstate([n])[n])
            if not result.ok or result.changed:
                print(f"not idempotent: {result.describe()}", file=sys.stderr)
                return 1
            runs.append(seconds)
        idem_rows.append((node.name, statistics.median(runs), max(runs), result.states))
        print(f"idempotent {node.name}: median {statistics.median(runs):.1f} s", file=sys.stderr)

    lines = [
        f"Measured {datetime.date.today()} on {platform.node()} "
        f"({platform.machine()}, 2 cores), profile `{args.profile}`, with",
        f"`.venv/bin/python benchmarks/highstate.py --profile {args.profile}`.",
        "",
        "Fresh highstate per role (one node at a time, packages in the node's apt cache):",
        "",
        "| roles with states | node | fresh highstate | states changed "
        "| apt download (not in the time) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for roles, node, seconds, download, changed in fresh_rows:
        lines.append(f"| {roles} | {node} | {seconds:.1f} s | {changed} | {download:.1f} s |")
    lines += [
        "",
        f"Idempotent highstate per node (median and max of {args.repeat}, zero changes each):",
        "",
        "| node | median | max | states |",
        "| --- | ---: | ---: | ---: |",
    ]
    for node, median, worst, states in idem_rows:
        lines.append(f"| {node} | {median:.1f} s | {worst:.1f} s | {states} |")
    goal_fresh = max(r[2] for r in fresh_rows) <= 120
    goal_idem = max(r[2] for r in idem_rows) <= 5
    lines += [
        "",
        f"Goals: fresh role <= 120 s: {'met' if goal_fresh else 'NOT met'}; "
        f"idempotent <= 5 s per node: {'met' if goal_idem else 'NOT met'}.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write("# Highstate benchmark\n\n" + report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
