"""saltyard.localcluster.vegeta refuses a load it must not send, naming the bad value, before
it starts anything."""

from __future__ import annotations

import pytest

from saltyard.localcluster import vegeta


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/id", "http://172.30.0.50/", "https://[::1]:8443/"]
)
def test_loopback_and_cluster_targets_are_accepted(url):
    assert vegeta.check_target(url)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://8.8.8.8/", "8.8.8.8"),
        ("http://10.1.2.3/", "10.1.2.3"),  # private, but no host of the local cluster
        ("http://192.168.1.1/", "192.168.1.1"),
        ("http://example.org/", "example.org"),
        ("http://0.0.0.0:80/", "0.0.0.0"),
        ("ftp://127.0.0.1/", "ftp://127.0.0.1/"),
    ],
)
def test_other_targets_are_refused_by_name(url, named):
    with pytest.raises(vegeta.LoadError, match=named.replace(".", r"\.")):
        vegeta.check_target(url)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate": 0}, "rate 0"),
        ({"rate": vegeta.MAX_RATE + 1}, f"rate {vegeta.MAX_RATE + 1}"),
        ({"rate": 2.5}, "rate 2.5"),
        ({"duration": 0}, "duration 0"),
        ({"duration": 301}, "duration 301"),
        ({"timeout": 0}, "timeout 0"),
    ],
)
def test_unbounded_loads_are_refused_before_vegeta_starts(kwargs, named, monkeypatch):
    # A missing binary would raise FileNotFoundError: the bounds are checked before that.
    monkeypatch.setattr(vegeta, "BINARY", vegeta.Path("/nonexistent/vegeta"))
    with pytest.raises(vegeta.LoadError, match=named):
        vegeta.Attack("http://127.0.0.1:1/", **kwargs)


def test_go_timestamps_keep_their_nanoseconds():
    a = vegeta._seconds("2026-12-02T19:05:48.778835815Z")
    b = vegeta._seconds("2026-12-02T19:05:48.779835815Z")
    assert round(b - a, 6) == 0.001
    assert vegeta._seconds("2026-12-02T20:05:48+01:00") == vegeta._seconds("2026-12-02T19:05:48Z")
