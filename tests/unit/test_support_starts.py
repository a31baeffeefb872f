"""tests/support/starts.py: the starts and stops of the suites' own Consul agents and emulators
are recorded only when scripts/test.sh asks, and added up per kind."""

from __future__ import annotations

import time

from tests.support import starts


def test_nothing_is_recorded_without_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(starts.ENV, raising=False)
    with starts.timed("consul", "start"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_starts_and_stops_are_timed_and_added_up(monkeypatch, tmp_path):
    log = tmp_path / "starts.log"
    monkeypatch.setenv(starts.ENV, str(log))
    for _ in range(2):
        with starts.timed("consul", "start"):
            time.sleep(0.05)
        with starts.timed("consul", "stop"):
            pass
    try:
        with starts.timed("emulator", "start"):
            raise RuntimeError("a start that failed is timed too")
    except RuntimeError:
        pass
    lines = log.read_text().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "consul start",
        "consul stop",
        "consul start",
        "consul stop",
        "emulator start",
    ]
    assert all(float(line.rsplit(" ", 1)[1]) >= 0.05 for line in lines[0:4:2])
    said = starts.summary(log)
    assert said.startswith("consul: 2 starts, 2 stops, 0.1")
    assert "emulator: 1 starts, 0 stops, 0.0 s in all" in said
