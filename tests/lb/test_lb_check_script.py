"""saltyard-lb-check (states/lb/files/saltyard-lb-check.sh), the lb state's check_cmd for the
http-level nginx file, against a real nginx with its own prefix on a loopback port: on its own,
and through Salt's own file.managed with check_cmd (as the state uses it). A candidate that
nginx refuses leaves the live file and the running nginx untouched."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.lb import lbstack

SCRIPT = lbstack.LB_FILES / "saltyard-lb-check.sh"
# Refused by nginx -t (an unknown directive), not by any syntax check of Salt's.
BROKEN = "proxy_next_upstream_trys 3;\n"


@pytest.fixture
def nginx(tmp_path):
    port = lbstack.free_port()
    lb = lbstack.lb_params(tmp_path, "127.0.0.1:1", f"127.0.0.1:{port}")
    (tmp_path / "nginx").mkdir()
    server = lbstack.Nginx(tmp_path / "nginx", lb)
    server.start()
    yield server
    server.stop()


def tree(directory: Path) -> dict[str, str]:
    """Every file under the nginx prefix but its logs, by content hash."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "logs" not in p.parts and p.name != "nginx.stderr"
    }


def check(nginx, candidate: Path) -> subprocess.CompletedProcess:
    # As Salt runs it: the state's check_cmd, then the candidate's path.
    return subprocess.run(
        [str(SCRIPT), str(nginx.prefix / "saltyard-lb.conf"), *nginx.args(), str(candidate)],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_judges_the_candidate_in_the_whole_configuration(nginx, tmp_path):
    live = nginx.prefix / "saltyard-lb.conf"
    before = tree(nginx.prefix)
    good = tmp_path / "good.conf"
    good.write_text(
        live.read_text().replace("proxy_connect_timeout 1s", "proxy_connect_timeout 2s")
    )
    assert check(nginx, good).returncode == 0

    broken = tmp_path / "broken.conf"
    broken.write_text(live.read_text() + BROKEN)
    refused = check(nginx, broken)
    assert refused.returncode == 1
    assert 'unknown directive "proxy_next_upstream_trys"' in refused.stderr
    assert f"refuses {broken} as {live}" in refused.stderr

    # A file that is fine alone but clashes with the rest (a second default server on the
    # same listen address) is refused too: the check sees the whole configuration.
    clash = tmp_path / "clash.conf"
    clash.write_text(
        live.read_text() + f"server {{ listen {nginx.lb['listen']} default_server; }}\n"
    )
    clashed = check(nginx, clash)
    assert clashed.returncode == 1 and "duplicate default server" in clashed.stderr

    assert tree(nginx.prefix) == before  # nothing written beside the copy
    assert nginx.get("unknown.saltyard.test").status_code == 404


def test_usage(tmp_path):
    assert subprocess.run([str(SCRIPT)], capture_output=True, timeout=10).returncode == 64
    outside = subprocess.run(
        [str(SCRIPT), "/elsewhere/x.conf", "-c", str(tmp_path / "nginx.conf"), "/dev/null"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (
        outside.returncode == 64 and "not under nginx's configuration directory" in outside.stderr
    )


def test_salt_file_managed_with_the_check_keeps_the_live_file(nginx, tmp_path):
    """Salt's file.managed with the state's check_cmd: a refused candidate fails the state
    and the live file stays byte for byte; an accepted one goes in."""
    import salt.client
    import salt.config

    opts = salt.config.minion_config(None)
    opts.update(
        file_client="local",
        id="lb-check-test",
        root_dir=str(tmp_path / "salt"),
        cachedir=str(tmp_path / "salt" / "cache"),
        pki_dir=str(tmp_path / "salt" / "pki"),
        file_roots={"base": [str(tmp_path / "salt" / "roots")]},
        pillar_roots={"base": [str(tmp_path / "salt" / "pillar")]},
        log_level="quiet",
    )
    caller = salt.client.Caller(mopts=opts)
    live = nginx.prefix / "saltyard-lb.conf"
    check_cmd = " ".join([str(SCRIPT), str(live), *nginx.args()])

    def managed(contents: str) -> dict:
        ret = caller.cmd(
            "state.single",
            "file.managed",
            name=str(live),
            contents=contents,
            check_cmd=check_cmd,
        )
        (result,) = ret.values()
        return result

    good_text = live.read_text()
    refused = managed(good_text + BROKEN)
    assert refused["result"] is False, refused
    assert "check_cmd execution failed" in refused["comment"]
    assert "proxy_next_upstream_trys" in refused["comment"]
    assert live.read_text() == good_text

    accepted = managed(good_text.replace("proxy_read_timeout 60s", "proxy_read_timeout 61s"))
    assert accepted["result"] is True, accepted
    assert "proxy_read_timeout 61s" in live.read_text()
    again = managed(live.read_text())
    assert again["result"] is True and again["changes"] == {}
