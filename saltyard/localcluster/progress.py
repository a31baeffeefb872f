"""Progress lines for long local-cluster work: one timestamped line per step, on stderr."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def step(message: str) -> None:
    elapsed = time.monotonic() - _START
    print(f"[saltyard {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
