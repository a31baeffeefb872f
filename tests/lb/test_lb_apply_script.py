"""saltyard-lb-apply (states/lb/files/saltyard-lb-apply.sh) on its own, against a real nginx
with its own prefix on a loopback port: what it does with a good render, an unchanged one, one
that nginx refuses, and a valid one when nginx is not running (exit status as documented)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from tests.lb import lbstack
from tests.support.wait import wait_until

SCRIPT = lbstack.LB_FILES / "saltyard-lb-apply.sh"
GOOD = """\
server {{
    listen {listen};
    server_name one.fat.saltyard.test;
    return 200 "{text}";
}}
"""


@pytest.fixture
def nginx(tmp_path):
    port = lbstack.free_port()
    lb = lbstack.lb_params(tmp_path, "127.0.0.1:1", f"127.0.0.1:{port}")
    (tmp_path / "nginx").mkdir()
    server = lbstack.Nginx(tmp_path / "nginx", lb)
    server.catcher = lbstack.SyslogCatcher(tmp_path / "syslog.sock")
    server.start()
    yield server
    server.stop()
    server.catcher.close()


def apply(nginx, staged: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), str(staged), nginx.lb["paths"]["live"], *nginx.args()],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "SALTYARD_LB_SYSLOG_SOCKET": str(nginx.catcher.path),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )


def body(nginx) -> str:
    return nginx.get("one.fat.saltyard.test").text


def test_apply_refuse_and_keep(nginx, tmp_path):
    listen = nginx.lb["listen"]
    live = Path(nginx.lb["paths"]["live"])
    staged = tmp_path / "staged.conf"

    staged.write_text(GOOD.format(listen=listen, text="first"))
    done = apply(nginx, staged)
    assert done.returncode == 0, done.stderr
    assert "applied" in done.stderr
    assert live.read_text() == staged.read_text()
    assert _eventually(lambda: body(nginx) == "first" and nginx.settled())
    # The reload stamp the release workflow reads (release_traffic.share): not older than LIVE.
    stamp = live.with_name(live.name + ".reloaded")
    assert stamp.stat().st_mtime_ns >= live.stat().st_mtime_ns

    # Unchanged: nothing to do, no reload, no log line.
    lines = len(nginx.catcher.lines)
    again = apply(nginx, staged)
    assert again.returncode == 0 and again.stderr == ""
    assert len(nginx.catcher.lines) == lines

    # Refused: the previous file is back, nginx still serves it, and the reason is logged.
    good = live.read_text()
    staged.write_text(GOOD.format(listen=listen, text="second") + "upstream x { }\n")
    refused = apply(nginx, staged)
    assert refused.returncode == 1
    assert "render refused by nginx -t" in refused.stderr
    assert "no servers are inside upstream" in refused.stderr
    assert live.read_text() == good
    assert body(nginx) == "first"
    assert _eventually(lambda: nginx.catcher.matching("render refused by nginx -t"))
    # The whole configuration still passes nginx -t (nothing half-applied).
    check = subprocess.run(["nginx", *nginx.args(), "-t"], capture_output=True, timeout=30)
    assert check.returncode == 0

    # Fixed: the next render goes in.
    staged.write_text(GOOD.format(listen=listen, text="third"))
    assert apply(nginx, staged).returncode == 0
    assert _eventually(lambda: body(nginx) == "third" and nginx.settled())

    # Valid but nginx is down: in place for nginx's next start, status 2, logged.
    nginx.stop()
    staged.write_text(GOOD.format(listen=listen, text="fourth"))
    down = apply(nginx, staged)
    assert down.returncode == 2, down.stderr
    assert "reload failed" in down.stderr
    assert live.read_text() == staged.read_text()
    # nginx did not take it: the stamp says so.
    assert stamp.stat().st_mtime_ns < live.stat().st_mtime_ns


def test_usage_and_missing_render(nginx, tmp_path):
    usage = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 64
    missing = apply(nginx, tmp_path / "nothing-rendered.conf")
    assert missing.returncode == 1
    assert "nothing applied" in missing.stderr
    assert requests.get(nginx.url, timeout=5).status_code == 404


def _eventually(predicate, timeout: float = 10.0):
    return wait_until(predicate, timeout, 0.1, ignore=(requests.RequestException,))
