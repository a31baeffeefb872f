"""The canary gate of a gray release: one window's figures in, pass / fail / inconclusive out.

Each lb node reports, for the canary group and for the stable group of an app, how many
requests it proxied in the window, how many of them got a 5xx answer, and a histogram of the
upstream times (``Figures``). The orchestration merges the reports of every lb node
(``Figures.merge``: counts add, histograms add, so the merged p99 is the p99 of all requests,
never an average of per-node p99s) and asks ``decide``.

The rules, in order (docs/release.md explains them):

1. Too few requests to judge: the canary or the stable group served fewer than
   ``min_requests`` in the window -> inconclusive.
2. The stable group breached an absolute limit in the same window (the app as a whole, or what
   it depends on, is in trouble): judging the canary against it says nothing -> inconclusive.
3. The canary's 5xx share is above ``max_5xx_share``, or its p99 is above ``p99_ms``, or its p99
   is above the stable group's p99 by more than ``margin`` (relative) and by more than
   ``margin_ms`` (absolute) -> fail. The absolute slack keeps noise from failing a good canary
   when both groups answer in a few milliseconds: 1 ms against 2 ms is twice as slow and
   means nothing (a good release was rolled back that way in benchmarks/release.py).
4. Otherwise -> pass.

Latencies go into buckets about 5 % wide (``bucket_of``); a p99 is the upper bound of the bucket
that holds the 99th percentile request, so it may read up to 5 % high and never low: the gate
errs towards failing a canary, not towards passing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"

# Bucket k holds latencies in (GROWTH**(k-1), GROWTH**k] milliseconds; bucket 0 holds <= 1 ms.
GROWTH = 1.05


def bucket_of(milliseconds: float) -> int:
    if milliseconds <= 1.0:
        return 0
    return math.ceil(math.log(milliseconds) / math.log(GROWTH) - 1e-9)


def bucket_upper_ms(bucket: int) -> float:
    return GROWTH**bucket


@dataclass
class Figures:
    """One group's requests in one window (one lb node's, or several merged)."""

    requests: int = 0
    errors_5xx: int = 0
    # bucket (bucket_of) -> number of requests whose upstream time fell in it
    latency: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, samples: list[tuple[int, float]]) -> Figures:
        """From (status, upstream milliseconds) pairs, as an access log gives them."""
        figures = cls()
        for status, milliseconds in samples:
            figures.add(status, milliseconds)
        return figures

    def add(self, status: int, milliseconds: float) -> None:
        self.requests += 1
        if 500 <= status <= 599:
            self.errors_5xx += 1
        bucket = bucket_of(milliseconds)
        self.latency[bucket] = self.latency.get(bucket, 0) + 1

    def merge(self, other: Figures) -> Figures:
        latency = dict(self.latency)
        for bucket, count in other.latency.items():
            latency[bucket] = latency.get(bucket, 0) + count
        return Figures(self.requests + other.requests, self.errors_5xx + other.errors_5xx, latency)

    @property
    def share_5xx(self) -> float:
        return self.errors_5xx / self.requests if self.requests else 0.0

    def percentile_ms(self, percent: float) -> float | None:
        """Nearest-rank percentile over the buckets (the bucket's upper bound); None when empty."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = max(1, math.ceil(percent / 100.0 * total))
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return bucket_upper_ms(bucket)
        raise AssertionError("unreachable: rank is at most the total")

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "errors_5xx": self.errors_5xx,
            "latency": {str(k): v for k, v in sorted(self.latency.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Figures:
        return cls(
            int(data["requests"]),
            int(data["errors_5xx"]),
            {int(k): int(v) for k, v in data.get("latency", {}).items()},
        )


@dataclass(frozen=True)
class Gate:
    max_5xx_share: float
    p99_ms: float
    min_requests: int
    margin: float
    margin_ms: float = 20.0


@dataclass(frozen=True)
class Verdict:
    outcome: str  # PASS, FAIL or INCONCLUSIVE
    reasons: tuple[str, ...]
    figures: dict

    def describe(self) -> str:
        return f"{self.outcome}: " + ("; ".join(self.reasons) or "every figure within its limit")


def _summary(figures: Figures) -> dict:
    return {
        "requests": figures.requests,
        "errors_5xx": figures.errors_5xx,
        "share_5xx": round(figures.share_5xx, 6),
        "p99_ms": figures.percentile_ms(99),
    }


def decide(canary: Figures, stable: Figures, gate: Gate) -> Verdict:
    figures = {"canary": _summary(canary), "stable": _summary(stable)}

    few = [
        f"the {name} group served {group.requests} requests in the window, fewer than "
        f"min_requests {gate.min_requests}"
        for name, group in (("canary", canary), ("stable", stable))
        if group.requests < gate.min_requests
    ]
    if few:
        return Verdict(INCONCLUSIVE, tuple(few), figures)

    stable_p99 = stable.percentile_ms(99)
    stable_breach = []
    if stable.share_5xx > gate.max_5xx_share:
        stable_breach.append(
            f"the stable group's 5xx share {stable.share_5xx:.4f} is above max_5xx_share "
            f"{gate.max_5xx_share} too"
        )
    if stable_p99 is not None and stable_p99 > gate.p99_ms:
        stable_breach.append(
            f"the stable group's p99 {stable_p99:.0f} ms is above p99_ms {gate.p99_ms:g} too"
        )
    if stable_breach:
        return Verdict(INCONCLUSIVE, tuple(stable_breach), figures)

    canary_p99 = canary.percentile_ms(99)
    failed = []
    if canary.share_5xx > gate.max_5xx_share:
        failed.append(
            f"canary 5xx share {canary.share_5xx:.4f} ({canary.errors_5xx} of "
            f"{canary.requests}) is above max_5xx_share {gate.max_5xx_share}"
        )
    if canary_p99 is not None and canary_p99 > gate.p99_ms:
        failed.append(f"canary p99 {canary_p99:.0f} ms is above p99_ms {gate.p99_ms:g}")
    if canary_p99 is not None and stable_p99 is not None:
        limit = max(stable_p99 * (1 + gate.margin), stable_p99 + gate.margin_ms)
        if canary_p99 > limit:
            failed.append(
                f"canary p99 {canary_p99:.0f} ms is above the stable group's p99 "
                f"{stable_p99:.0f} ms by more than margin {gate.margin:g} and margin_ms "
                f"{gate.margin_ms:g} (limit {limit:.0f} ms)"
            )
    if failed:
        return Verdict(FAIL, tuple(failed), figures)
    return Verdict(PASS, (), figures)
