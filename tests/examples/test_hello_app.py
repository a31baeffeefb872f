"""The example app (examples/apps/hello) as a real process on loopback: what the release
workflow's smoke test, gate and kill path rely on."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.wait import free_port, wait_until

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "apps" / "hello"


def start(tmp_path: Path, **release) -> tuple[subprocess.Popen, str]:
    """The app copied to tmp_path with ``release`` merged into its committed release.json."""
    for name in ("app.py", "release.json"):
        shutil.copy(APP_DIR / name, tmp_path / name)
    data = json.loads((tmp_path / "release.json").read_text()) | release
    (tmp_path / "release.json").write_text(json.dumps(data))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "app.py")],
        env={"PORT0": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    return proc, url


@pytest.fixture
def app(tmp_path):
    procs = []

    def run(**release):
        proc, url = start(tmp_path, **release)
        procs.append(proc)
        wait_until(
            lambda: requests.get(f"{url}/health", timeout=1).ok,
            10,
            message="the app answers /health",
            ignore=(requests.ConnectionError,),
        )
        return proc, url

    yield run
    for proc in procs:
        proc.kill()
        proc.wait()


def test_the_committed_release_is_healthy_and_names_its_version(app):
    committed = json.loads((APP_DIR / "release.json").read_text())
    _, url = app()
    assert requests.get(f"{url}/version", timeout=2).text.strip() == committed["version"]
    assert requests.get(f"{url}/", timeout=2).text == f"hello from {committed['version']}\n"
    # The committed release is a good one: no fault turned on.
    assert committed.get("error_share", 0) == 0 and committed.get("delay_ms", 0) == 0


def test_error_share_answers_500_on_about_that_share(app):
    _, url = app(version="2.0.0-bad", error_share=0.5)
    codes = [requests.get(f"{url}/", timeout=2).status_code for _ in range(400)]
    assert set(codes) == {200, 500}
    # 400 draws at p=0.5: outside 140..260 has a probability below 1e-9.
    assert 140 <= codes.count(500) <= 260
    # Health stays good: the fault is in the answers, which only the gate sees.
    assert all(requests.get(f"{url}/health", timeout=2).ok for _ in range(20))


def test_delay_is_added_to_answers_but_not_to_health(app):
    _, url = app(version="2.0.0-slow", delay_ms=300)
    started = time.monotonic()
    assert requests.get(f"{url}/", timeout=5).ok
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert requests.get(f"{url}/health", timeout=5).ok
    assert time.monotonic() - started < 0.3


def test_sigterm_keeps_serving_for_the_drain_time_then_exits(app):
    proc, url = app(drain_seconds=2)
    proc.send_signal(signal.SIGTERM)
    killed = time.monotonic()
    wait_until(
        lambda: requests.get(f"{url}/health", timeout=1).status_code == 503,
        2,
        message="/health answers 503 after SIGTERM",
    )
    # Work is still answered during the drain.
    assert requests.get(f"{url}/version", timeout=1).ok
    proc.wait(timeout=10)
    assert time.monotonic() - killed >= 1.9
    assert proc.returncode == 0
    assert "SIGTERM, serving 2 s more" in proc.stdout.read()


@pytest.mark.parametrize(
    ("release", "named"),
    [
        ({"version": ""}, "version ''"),
        ({"error_share": 1.5}, "error_share 1.5"),
        ({"delay_ms": -1}, "delay_ms -1"),
        ({"drain_seconds": "5"}, "drain_seconds '5'"),
        ({"error_share": True}, "error_share True"),
    ],
)
def test_a_bad_release_file_stops_the_app_at_start_naming_the_value(tmp_path, release, named):
    proc, _ = start(tmp_path, **release)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode != 0
    assert named in out
