"""The lb role's consul-template unit stops the real consul-template at once: the unit's
KillSignal (as Salt renders it for lb1) ends the process within seconds, where systemd's default
SIGTERM is passed on to its commands and left a restart waiting 90 s for SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.lb import lbstack
from tests.processes import stop_process
from tests.state_render import StateRenderer, state_args
from tests.support.components import require_file

LB_PILLAR = {
    "pki": {"ca": "CA", "node": {"cert": "CERT", "key": "KEY"}},
    "consul": {"encrypt": "not-a-key", "acl": {"tokens": {"agent": "a", "lb": "b"}}},
}


def unit_setting(unit: str, key: str) -> str | None:
    values = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]
    return values[-1] if values else None


@pytest.fixture
def consul_template(tmp_path):
    """The pinned consul-template, running: Consul unreachable, so it keeps retrying (attempts
    0, as the lb role configures it) and never finishes by itself."""
    require_file(lbstack.CONSUL_TEMPLATE, "consul-template", "run scripts/build-consul-template.sh")
    (tmp_path / "t.ctmpl").write_text("{{ range services }}{{ .Name }}{{ end }}\n")
    (tmp_path / "ct.hcl").write_text(
        'consul {\n  address = "127.0.0.1:1"\n  retry {\n    enabled = true\n'
        '    attempts = 0\n    backoff = "250ms"\n  }\n}\n'
        f'template {{\n  source = "{tmp_path}/t.ctmpl"\n  destination = "{tmp_path}/out"\n'
        '  exec {\n    command = ["/bin/sh", "-c", "true"]\n  }\n}\n'
    )
    proc = subprocess.Popen(
        [str(lbstack.CONSUL_TEMPLATE), "-config", str(tmp_path / "ct.hcl")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    yield proc
    stop_process(proc, grace=2, sig=signal.SIGKILL)


def test_the_units_kill_signal_stops_consul_template_within_seconds(tmp_path, consul_template):
    rendered = StateRenderer(tmp_path / "render", "lb1", pillar=LB_PILLAR).show_sls("lb")
    unit = state_args(rendered, "lb-consul-template-unit")["contents"]
    kill_signal = unit_setting(unit, "KillSignal") or "SIGTERM"  # systemd's default

    time.sleep(1)
    assert consul_template.poll() is None, "consul-template exited before the signal"
    consul_template.send_signal(getattr(signal, kill_signal))
    try:
        consul_template.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"consul-template still runs 5 s after the unit's KillSignal {kill_signal}")
