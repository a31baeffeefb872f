"""Benchmark: a fresh highstate on every node, and idempotent highstates on every node.

    .venv/bin/python benchmarks/highstate.py [--profile full] [--output docs/benchmarks.md]
    .venv/bin/python benchmarks/highstate.py --idempotent-only     # on a converged cluster
    .venv/bin/python benchmarks/highstate.py --nodes lvs1,agent-vm  # time only these nodes

Needs a local cluster whose nodes have not been highstated yet, so it brings one up itself
(`saltyard cluster down`, then `up` without the highstate). Nodes run one at a time, so a figure
is one node's, not the machine's share of eleven. ``--output`` replaces the "Highstate
benchmark" section of that file and keeps the others. ``--idempotent-only`` times the idempotent
highstates of the running, converged cluster (no bring-up, no fresh runs) and only prints them.

"Fresh, packages cached": the role's packages are fetched into the node's apt cache first (the
package list comes from a test-mode highstate), then the highstate is timed; the download from
the Debian mirror is reported separately. Goals (issue 2): fresh role <= 120 s, idempotent
highstate <= 5 s per node.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time

from saltyard.localcluster.cluster import Cluster

PKG_PREDICTION = re.compile(r"would be installed/updated: (.+)$")
SECTION = "# Highstate benchmark"


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


def replace_section(path: str, text: str) -> None:
    """Put ``text`` in place of the file's SECTION (up to the next top-level heading)."""
    with open(path) as handle:
        lines = handle.read().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        lines = [text, "\n", *lines]
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("# ")), len(lines)
        )
        lines[start:end] = [text, "\n"]
    with open(path, "w") as handle:
        handle.write("".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="full")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    parser.add_argument("--repeat", type=int, default=3, help="idempotent runs per node")
    parser.add_argument(
        "--idempotent-only",
        action="store_true",
        help="only the idempotent runs, on the running converged cluster (prints, never writes)",
    )
    parser.add_argument(
        "--nodes",
        help="time only these nodes (comma-separated); the others get an untimed highstate "
        "first, all at once, so that the timed ones find the cluster they depend on "
        "(prints, never writes)",
    )
    args = parser.parse_args()
    if args.idempotent_only and args.output:
        parser.error("--idempotent-only prints its figures; it does not replace the section")
    if args.nodes and args.output:
        parser.error("--nodes prints its figures; it does not replace the section")

    cluster = Cluster(profile=args.profile)
    timed_nodes = cluster.nodes
    if args.nodes:
        wanted = args.nodes.split(",")
        unknown = sorted(set(wanted) - {n.name for n in cluster.nodes})
        if unknown:
            parser.error(
                f"--nodes: {', '.join(unknown)} not in profile {args.profile!r} "
                f"(its nodes: {', '.join(n.name for n in cluster.nodes)})"
            )
        timed_nodes = [n for n in cluster.nodes if n.name in wanted]
    if not args.idempotent_only:
        cluster.down()
        cluster.up(highstate=False)
        others = [n.name for n in cluster.nodes if n not in timed_nodes]
        if others:
            print(f"untimed highstate first: {', '.join(others)}", file=sys.stderr)
            for result in cluster.highstate(others).values():
                if not result.ok:
                    print(result.describe(), file=sys.stderr)
                    return 1

    fresh_rows = []
    for node in timed_nodes if not args.idempotent_only else []:
        roles = ", ".join(node.roles)
        predicted = cluster.highstate([node.name], "test=True")[node.name]
        packages = predicted_packages(predicted)
        download = 0.0
        if packages:
            _, download = timed(
                lambda n=node.name, p=packages: cluster.salt(
                    [n], "pkg.install", f"pkgs={json.dumps(p)}", "downloadonly=True"
                )
            )
        result, seconds = timed(lambda n=node.name: cluster.highstate([n])[n])
        if not result.ok:
            print(result.describe(), file=sys.stderr)
            return 1
        fresh_rows.append((roles, node.name, seconds, download, len(result.changed)))
        print(f"fresh {node.name} ({roles}): {seconds:.1f} s", file=sys.stderr)

    idem_rows = []
    for node in timed_nodes:
        runs = []
        for _ in range(args.repeat):
            result, seconds = timed(lambda n=node.name: cluster.highstate([n])[n])
            if not result.ok or result.changed:
                print(f"not idempotent: {result.describe()}", file=sys.stderr)
                return 1
            runs.append(seconds)
        idem_rows.append((node.name, statistics.median(runs), max(runs), result.states))
        print(f"idempotent {node.name}: median {statistics.median(runs):.1f} s", file=sys.stderr)

    command = f".venv/bin/python benchmarks/highstate.py --profile {args.profile}"
    if args.nodes:
        command += f" --nodes {args.nodes}"
    if args.idempotent_only:
        command += " --idempotent-only"
    lines = [
        f"Measured {datetime.date.today()} on {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} cores), profile `{args.profile}`, with",
        f"`{command}`.",
    ]
    if fresh_rows:
        lines += [
            "",
            "Fresh highstate per node (one node at a time, packages in the node's apt cache):",
            "",
            "| roles | node | fresh highstate | states changed | apt download (not in the time) |",
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
    goals = []
    if fresh_rows:
        goal_fresh = max(r[2] for r in fresh_rows) <= 120
        goals.append(f"fresh node <= 120 s: {'met' if goal_fresh else 'MISSED'}")
    goal_idem = max(r[2] for r in idem_rows) <= 5
    goals.append(f"idempotent <= 5 s per node: {'met' if goal_idem else 'MISSED'}")
    lines += ["", f"Goals: {'; '.join(goals)}."]
    report = "\n".join(lines)
    print(report)
    if args.output:
        replace_section(args.output, f"{SECTION}\n\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
