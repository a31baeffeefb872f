"""The convergence suite's cluster comes up, and gets its first highstate, in the background
while the other suites run.

Bringing a fresh local cluster up (node and VM images, containers, the VM's boot, the Salt
bootstrap, every minion answering) takes about ten minutes, and test mode plus the first
highstate from bare nodes about eight more; neither needs the host-level suites to finish. When
a session selects tests of tests/convergence and of other suites, this plugin moves the
convergence tests to the end (after the host-level tests marked ``load``) and, as the session
starts, runs ``python -m tests.support.cluster_warmup`` in a child process: ``cluster down``,
``cluster up`` without the highstate, then the first highstate (tests/convergence/first_run.py:
test mode on every node, then the real run), whose per-node results it writes to
``.state/first-highstate.json``; its output goes to ``.state/cluster-warmup.log``. The
convergence suite's ``cluster`` fixture calls ``wait()``, which shows that output and fails with
its end if the bring-up failed; test_highstate.py then judges the saved results (a failed
highstate is a test failure there, not a bring-up failure).

The host-level tests marked ``load`` run while that highstate may be running: their apps give
health checks the slack of a loaded machine (tests/lb/test_lb_scaling_load.py).
SALTYARD_REUSE_CLUSTER=1 turns the plugin off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saltyard.localcluster.cluster import STATE_DIR, Cluster
from saltyard.localcluster.progress import step
from tests.convergence import first_run

CONVERGENCE = Path(__file__).resolve().parent.parent / "convergence"
LOG = STATE_DIR / "cluster-warmup.log"
REUSE = os.environ.get("SALTYARD_REUSE_CLUSTER") == "1"

_process: subprocess.Popen | None = None


def _is_convergence(item: pytest.Item) -> bool:
    return CONVERGENCE in Path(str(item.path)).parents


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Convergence last, and the host-level tests marked ``load`` just before it; and when
    other tests come first, start the bring-up now.

    The bring-up's first minutes (debootstrap of the VM image, ten containers built and started,
    pip and pyinfra) keep both cores busy; a test that judges behaviour under load (no failed
    request while scaling) run then fails on the machine, not on the code: a health check of
    its one instance timed out and the instance left the load balancer for a second. Later the
    bring-up mostly waits for the emulated VM."""
    convergence = [item for item in items if _is_convergence(item)]
    others = [item for item in items if not _is_convergence(item)]
    load = [item for item in others if item.get_closest_marker("load")]
    others = [item for item in others if not item.get_closest_marker("load")]
    items[:] = others + load + convergence
    if convergence and others and not REUSE and not config.option.collectonly:
        from tests.convergence.helpers import PROFILE

        start(PROFILE)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"saltyard: bringing the local cluster up in the background for "
                f"tests/convergence, which runs last (log: {LOG})"
            )


def start(profile: str) -> None:
    global _process
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG, "w") as log:
        _process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.cluster_warmup", profile],
            cwd=CONVERGENCE.parent.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: stopped as a whole if the session ends before it does.
            start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )


def started() -> bool:
    return _process is not None


def wait() -> None:
    """Show the bring-up's output (what is there, then as it comes) until it ends; raise with
    its last lines if it failed."""
    assert _process is not None
    step("waiting for the background bring-up of the local cluster; its output so far:")
    with open(LOG, errors="replace") as log:
        while True:
            line = log.readline()
            if line:
                sys.stdout.write("    | " + line)
                sys.stdout.flush()
                continue
            if _process.poll() is not None:
                break
            time.sleep(0.5)
    if _process.returncode != 0:
        tail = LOG.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(
            f"the background bring-up of the local cluster failed (exit {_process.returncode}); "
            f"its last lines ({LOG}):\n" + "\n".join(tail)
        )


def pytest_sessionfinish(session, exitstatus) -> None:
    """A bring-up still running (the session stopped early) is stopped with it."""
    if _process is not None and _process.poll() is None:
        os.killpg(_process.pid, signal.SIGTERM)
        try:
            _process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(_process.pid, signal.SIGKILL)


def main(profile: str) -> None:
    first_run.RESULTS.unlink(missing_ok=True)
    cluster = Cluster(profile=profile)
    cluster.down()
    cluster.up(highstate=False)
    first_run.run(cluster).save()


if __name__ == "__main__":
    main(sys.argv[1])
