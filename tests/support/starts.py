"""What the host-level suites spend on starting and stopping their own Consul agents and
Marathon-API emulators. Issue 13 asked for one of each shared by all the suites; this is the
figure that decides whether that would pay: with ``SALTYARD_STARTS_LOG`` naming a file (as
scripts/test.sh sets it), every start and stop appends a line ``<kind> <start|stop> <seconds>``,
and ``summary`` adds them up (scripts/test.sh prints it at the end of a run)."""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "SALTYARD_STARTS_LOG"


@contextmanager
def timed(kind: str, what: str) -> Iterator[None]:
    began = time.monotonic()
    try:
        yield
    finally:
        path = os.environ.get(ENV)
        if path:
            with open(path, "a") as log:
                log.write(f"{kind} {what} {time.monotonic() - began:.3f}\n")


def summary(path: Path) -> str:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    for line in path.read_text().splitlines():
        kind, what, took = line.split()
        counts[kind, what] += 1
        seconds[kind, what] += float(took)
    kinds = sorted({kind for kind, _ in counts})
    parts = []
    for kind in kinds:
        starts, stops = counts[kind, "start"], counts[kind, "stop"]
        total = seconds[kind, "start"] + seconds[kind, "stop"]
        parts.append(f"{kind}: {starts} starts, {stops} stops, {total:.1f} s in all")
    return "; ".join(parts) or "nothing started"


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
