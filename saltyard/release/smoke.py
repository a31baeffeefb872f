"""The smoke test after a deployment: the new version answers through a load balancer.

``GET /version`` on the lb with ``Host: <app>.<env>.<domain>``, until ``in_a_row`` answers in a
row are the expected version (one good answer can come from the last old task still listed), or
the deadline passes: then SmokeFailed says what the lb answered last and how often each answer
came. The answers come 0.1 s apart: the streak is what guards against an old task still
listed or a new one not yet listed on the lb, and a 0.5 s pause made every smoke test cost at
least 2 s of the release's own time (docs/benchmarks.md, "Releases under load").
"""

from __future__ import annotations

import collections
import time

import requests


class SmokeFailed(Exception):
    """The version did not answer through the lb in time; the message says what did."""


def smoke(
    lb_url: str,
    host: str,
    version: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    in_a_row: int = 5,
    path: str = "/version",
) -> int:
    """Return the number of requests it took; raise SmokeFailed after ``timeout`` seconds."""
    seen: collections.Counter[str] = collections.Counter()
    last = "nothing"
    streak = sent = 0
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while True:
            sent += 1
            try:
                response = session.get(lb_url.rstrip("/") + path, headers={"Host": host}, timeout=5)
                text = response.text.strip()
                last = f"HTTP {response.status_code} {text[:80]!r}"
                good = response.status_code == 200 and text == version
            except requests.RequestException as exc:
                last = f"no answer ({type(exc).__name__})"
                good = False
            seen[last] += 1
            streak = streak + 1 if good else 0
            if streak >= in_a_row:
                return sent
            if time.monotonic() >= deadline:
                answers = ", ".join(f"{answer} x{n}" for answer, n in seen.most_common(4))
                raise SmokeFailed(
                    f"{host} through {lb_url} did not answer version {version!r} {in_a_row} "
                    f"times in a row within {timeout:g} s; last: {last}; answers: {answers}"
                )
            time.sleep(interval)
