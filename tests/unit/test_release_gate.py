"""The canary gate's arithmetic (saltyard/release/gate.py)."""

from __future__ import annotations

import pytest

from saltyard.release.gate import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Figures,
    Gate,
    bucket_of,
    bucket_upper_ms,
    decide,
)

GATE = Gate(max_5xx_share=0.01, p99_ms=500, min_requests=100, margin=0.25)


def group(requests: int, errors: int = 0, ms: float = 50.0, slow: int = 0, slow_ms: float = 0):
    """``requests`` answers, ``errors`` of them 5xx, ``slow`` of them taking ``slow_ms``."""
    samples = [(500 if i < errors else 200, slow_ms if i < slow else ms) for i in range(requests)]
    return Figures.of(samples)


@pytest.mark.parametrize("ms", [0.2, 1.0, 1.3, 7.0, 49.9, 50.0, 512.0, 30_000.0])
def test_a_bucket_never_reads_low_and_at_most_5_percent_high(ms):
    upper = bucket_upper_ms(bucket_of(ms))
    assert upper >= ms
    assert upper <= max(1.0, ms * 1.05 + 1e-9)


def test_p99_is_the_nearest_rank_over_all_requests():
    figures = group(1000, slow=10, ms=20, slow_ms=900)  # exactly 1 % slow
    assert figures.percentile_ms(99) == pytest.approx(bucket_upper_ms(bucket_of(20)))
    figures = group(1000, slow=11, ms=20, slow_ms=900)  # 1.1 % slow: the p99 request is slow
    assert figures.percentile_ms(99) == pytest.approx(bucket_upper_ms(bucket_of(900)))
    assert Figures().percentile_ms(99) is None


def test_merging_lb_nodes_adds_requests_not_percentiles():
    # One lb node saw only fast requests, the other a few slow ones: the merged p99 is the p99
    # of all requests, not an average of the two nodes' p99s.
    fast, mixed = group(900, ms=10), group(100, slow=20, ms=10, slow_ms=800)
    merged = fast.merge(mixed)
    assert merged.requests == 1000
    assert merged.percentile_ms(99) == pytest.approx(bucket_upper_ms(bucket_of(800)))
    assert Figures.from_dict(merged.to_dict()) == merged


def test_a_healthy_canary_passes():
    verdict = decide(group(200), group(2000), GATE)
    assert verdict.outcome == PASS, verdict.describe()
    assert verdict.figures["canary"]["requests"] == 200


def test_a_canary_with_too_many_5xx_fails_and_says_by_how_much():
    verdict = decide(group(200, errors=5), group(2000), GATE)
    assert verdict.outcome == FAIL
    assert "canary 5xx share 0.0250 (5 of 200) is above max_5xx_share 0.01" in verdict.describe()


def test_a_slow_canary_fails_on_the_absolute_limit():
    verdict = decide(group(200, slow=10, slow_ms=2000), group(2000), GATE)
    assert verdict.outcome == FAIL
    assert "above p99_ms 500" in verdict.describe()


def test_a_canary_slower_than_stable_by_more_than_the_margin_fails():
    # 300 ms is within p99_ms, but twice the stable group's 150 ms.
    verdict = decide(group(200, ms=300), group(2000, ms=150), GATE)
    assert verdict.outcome == FAIL
    assert "by more than margin 0.25 and margin_ms 20" in verdict.describe()
    # Within the margin (150 -> 180 ms): pass.
    assert decide(group(200, ms=180), group(2000, ms=150), GATE).outcome == PASS


def test_too_few_requests_is_inconclusive_whatever_the_errors():
    verdict = decide(group(50, errors=50), group(2000), GATE)
    assert verdict.outcome == INCONCLUSIVE
    assert "canary group served 50 requests" in verdict.describe()
    assert decide(group(200), group(20), GATE).outcome == INCONCLUSIVE


def test_a_stable_group_in_trouble_makes_the_window_inconclusive():
    verdict = decide(group(200, errors=10), group(2000, errors=100), GATE)
    assert verdict.outcome == INCONCLUSIVE
    assert "stable group's 5xx share 0.0500 is above max_5xx_share 0.01 too" in verdict.describe()


def test_a_few_milliseconds_slower_is_not_a_regression():
    # Twice as slow, but 1 ms against 2 ms: within margin_ms (20 ms by default), so it passes.
    assert decide(group(600, ms=2), group(6000, ms=1), GATE).outcome == PASS
    # 10 ms against 40 ms is 30 ms more and four times as slow: it fails.
    verdict = decide(group(600, ms=40), group(6000, ms=10), GATE)
    assert verdict.outcome == FAIL
    assert "limit 30 ms" in verdict.describe()
    strict = Gate(max_5xx_share=0.01, p99_ms=500, min_requests=100, margin=0.25, margin_ms=0)
    assert decide(group(600, ms=2), group(6000, ms=1), strict).outcome == FAIL
