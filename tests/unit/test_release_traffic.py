"""saltyard/release/traffic.py: a gate window's figures from the lb's release log. The lines are
made from LOG_FORMAT itself, as nginx fills it in, so a format that is not JSON fails here; the
real nginx writing it is tested in tests/lb."""

from __future__ import annotations

import json
import os

import pytest

from saltyard.release import traffic
from saltyard.release.gate import bucket_of


def line(t, app="hello", env="prod", group="stable", status=200, upstream_time="0.010") -> str:
    values = {
        "$msec": f"{t:.3f}",
        "$saltyard_app": app,
        "$saltyard_env": env,
        "$saltyard_group": group,
        "$status": str(status),
        "$upstream_response_time": upstream_time,
        "$upstream_addr": "172.30.0.21:31000",
    }
    text = traffic.LOG_FORMAT
    for name in sorted(values, key=len, reverse=True):
        text = text.replace(name, values[name])
    json.loads(text)  # what nginx writes must parse
    return text + "\n"


def write(path, lines) -> None:
    path.write_text("".join(lines))


def test_the_window_holds_exactly_the_requests_that_ended_in_it(tmp_path):
    log = tmp_path / "release.log"
    write(
        log,
        [line(99.999), line(100.0), line(100.5, group="canary", status=503), line(109.999)]
        + [line(110.0), line(110.5, group="canary")],
    )
    figures = traffic.window(log, "hello", "prod", 100.0, 110.0)
    assert figures["stable"].requests == 2
    assert figures["canary"].requests == 1
    assert figures["canary"].errors_5xx == 1
    assert figures["stable"].errors_5xx == 0


def test_other_apps_envs_and_groups_are_not_counted(tmp_path):
    log = tmp_path / "release.log"
    write(
        log,
        [
            line(101, app="other"),
            line(102, env="uat"),
            line(103, group="-"),  # a virtual host without a split
            line(104),
        ],
    )
    figures = traffic.window(log, "hello", "prod", 100, 110)
    assert figures["stable"].requests == 1
    assert figures["canary"].requests == 0


def test_retries_add_up_and_a_request_that_reached_no_upstream_is_a_5xx(tmp_path):
    log = tmp_path / "release.log"
    write(
        log,
        [
            line(101, upstream_time="0.100, 0.250"),  # a retry: the client waited 350 ms
            line(102, status=502, upstream_time="-"),  # nginx answered alone
            line(103, status=502, upstream_time="0.001, -"),  # refused, then nothing
        ],
    )
    stable = traffic.window(log, "hello", "prod", 100, 110)["stable"]
    assert stable.requests == 3
    assert stable.errors_5xx == 2
    assert stable.latency == {bucket_of(350.0): 1, bucket_of(1.0): 1}


def test_an_unfinished_last_line_and_garbage_are_skipped(tmp_path):
    log = tmp_path / "release.log"
    write(log, [line(101), "not json\n", line(102), line(103)[:30]])
    assert traffic.window(log, "hello", "prod", 100, 110)["stable"].requests == 2


def test_chunk_boundaries_do_not_split_or_lose_lines(tmp_path, monkeypatch):
    log = tmp_path / "release.log"
    times = [100 + i / 100 for i in range(500)]
    write(log, [line(t, status=500 if i % 7 == 0 else 200) for i, t in enumerate(times)])
    for chunk in (1, 7, 64, 1000):
        monkeypatch.setattr(traffic, "CHUNK", chunk)
        stable = traffic.window(log, "hello", "prod", 100, 105)
        assert stable["stable"].requests == 500
        assert stable["stable"].errors_5xx == len(range(0, 500, 7))


def test_the_scan_stops_once_lines_are_older_than_the_slack(tmp_path, monkeypatch):
    """A line that ended long before the window stops the scan, so older lines are never
    read: the older 'in window' line here (out of order by far more than any request lasts)
    is not counted."""
    log = tmp_path / "release.log"
    write(log, [line(1005), line(1000 - traffic.SLACK - 1), line(1006), line(1007)])
    assert traffic.window(log, "hello", "prod", 1000, 1010)["stable"].requests == 2


def test_a_missing_log_is_an_empty_window(tmp_path):
    figures = traffic.window(tmp_path / "absent.log", "hello", "prod", 0, 1)
    assert {g: f.requests for g, f in figures.items()} == {"canary": 0, "stable": 0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.004", 4.0), ("0.100, 0.250", 350.0), ("0.1 : 0.2", 300.0), ("-", None), ("", None)],
)
def test_upstream_ms(value, expected):
    result = traffic.upstream_ms(value)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_every_lb_nodes_figures_add_up(tmp_path):
    one, two = tmp_path / "lb1.log", tmp_path / "lb2.log"
    write(one, [line(101), line(102, group="canary", status=500, upstream_time="0.300")])
    write(two, [line(103), line(104), line(105, group="canary")])
    answers = {
        node: {g: f.to_dict() for g, f in traffic.window(path, "hello", "prod", 100, 110).items()}
        for node, path in (("lb1", one), ("lb2", two))
    }
    merged = traffic.merge(answers, ["lb1", "lb2"])
    assert merged["stable"].requests == 3
    assert (merged["canary"].requests, merged["canary"].errors_5xx) == (2, 1)
    # The merged p99 is that of all the canary's requests: the slow one on lb1.
    assert merged["canary"].percentile_ms(99) >= 300


def test_a_missing_or_failed_lb_node_makes_the_window_incomplete(tmp_path):
    good = {"canary": {"requests": 0, "errors_5xx": 0}, "stable": {"requests": 5, "errors_5xx": 0}}
    with pytest.raises(traffic.IncompleteWindow, match=r"\['lb2'\] \(lb2: no answer\)"):
        traffic.merge({"lb1": good}, ["lb1", "lb2"])
    with pytest.raises(traffic.IncompleteWindow, match="lb2: 'release_traffic.window' is not"):
        traffic.merge(
            {"lb1": good, "lb2": "'release_traffic.window' is not available."}, ["lb1", "lb2"]
        )


def test_served_share_reads_the_marker_and_knows_whether_nginx_reloaded(tmp_path):
    live = tmp_path / "apps.conf"
    stamp = tmp_path / "apps.conf.reloaded"
    assert traffic.served_share(live, "hello", "prod")["share"] is None  # no file yet
    live.write_text(
        "# saltyard-canary-share hello.fat 0\nserver {}\n"
        "# saltyard-canary-share hello.prod 12.5\nserver {}\n"
        "# saltyard-canary-share hello-two.prod 100\nserver {}\n"
    )
    os.utime(live, ns=(2_000_000_000, 2_000_000_000))
    # The file is in place but nginx has not reloaded it: not applied.
    assert traffic.served_share(live, "hello", "prod") == {
        "share": 12.5,
        "applied": False,
        "live": str(live),
    }
    stamp.touch()
    os.utime(stamp, ns=(1_000_000_000, 1_000_000_000))
    assert not traffic.served_share(live, "hello", "prod")["applied"]  # an older reload
    os.utime(stamp, ns=(3_000_000_000, 3_000_000_000))
    assert traffic.served_share(live, "hello", "prod")["applied"]
    assert traffic.served_share(live, "hello", "fat")["share"] == 0
    assert traffic.served_share(live, "hello-two", "prod")["share"] == 100
    # No virtual host for the app in that env: no share (not 0, which would say it is served).
    assert traffic.served_share(live, "hello", "uat")["share"] is None
    assert traffic.served_share(live, "hell", "prod")["share"] is None
