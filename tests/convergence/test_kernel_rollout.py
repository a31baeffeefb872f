"""orch.kernel_rollout on lvs1, a node that boots a kernel of its own (a QEMU VM that boots
through the GRUB on its disk) and is no Mesos agent: it runs the image's 6.1 while the local
site's pillar asks for 6.12 (bookworm-security's series); lvs1 has no kernel role, so only the
rollout upgrades it.

In order: a kernel apt does not have is refused before anything changes; bad targets and
timeouts are refused, naming them; test mode plans the upgrade and changes nothing; and a node
that does not come back after its reboot (its VM killed while it shuts down, after the run
installed 6.12) stops the run there, naming the node and the timeout, with the node after it
untouched. That last test runs after every other convergence test (marked ``last``): it
restarts lvs1 and does not wait for it, which saves the suite the one and a half minutes of an
emulated boot and the registry VIP's return that later tests would otherwise need.

The whole rollout (drain, install, reboot, converge, up, tasks back), under load and twice, runs
on the agent VM: test_kernel_rollout_agent.py."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from saltyard.localcluster import vm
from tests.convergence.release_run import Events

pytestmark = pytest.mark.cluster

OLD_SERIES = "6.1."
NEW_SERIES = "6.12."
KERNEL = {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}


@pytest.fixture(scope="module")
def lvs(cluster, converged) -> str:
    found = [n.name for n in cluster.nodes if n.is_vm and not n.has_role("mesos-agent")]
    if not found:
        pytest.skip("no VM that is no Mesos agent in this profile (lvs1 is one)")
    return found[0]


@pytest.fixture(scope="module")
def container(cluster, converged) -> str:
    """A container node that follows lvs1 in the target list (always skipped: it runs the
    host's kernel)."""
    return next(n.name for n in cluster.nodes if n.has_role("mesos-agent") and not n.is_vm)


def orchestrate(cluster, pillar: dict, test: bool = False) -> tuple[int, str]:
    # The local site sets no kernel:boot: each run names the kernel (pillar/sites/local.sls).
    pillar = {"kernel_rollout": {"kernel": KERNEL}, **pillar}
    cmd = ["salt-run", "--out=json", "state.orchestrate", "orch.kernel_rollout"]
    cmd.append(f"pillar={json.dumps(pillar)}")
    if test:
        cmd.append("test=True")
    return cluster.exec(cluster.inventory.master.name, cmd, check=False)


def node_kernel(cluster, node: str) -> dict:
    _, out = cluster.exec(node, ["sh", "-c", "uname -r; cat /proc/sys/kernel/random/boot_id"])
    release, boot = out.split()
    _, boot_files = cluster.exec(node, ["ls", "/boot"])
    return {"release": release, "boot_id": boot, "boot_files": boot_files.split()}


def test_a_kernel_apt_does_not_have_is_refused_before_anything_changes(cluster, lvs):
    before = node_kernel(cluster, lvs)
    assert before["release"].startswith(OLD_SERIES), before
    missing = {"package": "linux-image-9.99-cloud-amd64", "release": "9.99"}
    code, text = orchestrate(cluster, {"targets": [lvs], "kernel_rollout": {"kernel": missing}})
    assert code != 0, text
    assert f"{lvs}: plan failed" in text, text
    assert "'linux-image-9.99-cloud-amd64' has no installable version" in text, text
    assert "nothing was drained or changed" in text, text
    assert node_kernel(cluster, lvs) == before


def test_unknown_targets_and_bad_timeouts_are_refused_naming_them(cluster, lvs):
    for pillar, message in (
        ({"targets": ["nosuch1"]}, "targets ['nosuch1'] are not in the inventory"),
        ({"targets": []}, "name the nodes to upgrade"),
        ({"targets": [lvs], "reboot_timeout": 0}, "reboot_timeout=0: expected a number"),
        ({"targets": [lvs, lvs]}, f"targets name ['{lvs}'] more than once"),
    ):
        code, text = orchestrate(cluster, pillar)
        assert code != 0 and message in text, (pillar, text)


def test_test_mode_plans_the_upgrade_and_changes_nothing(cluster, lvs, container):
    before = node_kernel(cluster, lvs)
    code, text = orchestrate(cluster, {"targets": [lvs, container]}, test=True)
    assert code == 0, text
    assert f"would upgrade: {lvs}; skipped: {container}" in text, text
    # The kernel state's own prediction: the package and a reboot.
    assert "linux-image-6.12-cloud-amd64" in text and "reboot_required" in text, text
    assert node_kernel(cluster, lvs) == before


def _kill_when_shutting_down(log_path, pid_of, stop: threading.Event, seen: list) -> None:
    """Kill the VM's QEMU once its console shows the guest shutting down: a node that never
    comes back from its reboot."""
    start = log_path.stat().st_size
    while not stop.is_set():
        with open(log_path, "rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
        if "Stopping" in text or "reboot:" in text:
            pid = pid_of()
            if pid:
                os.kill(pid, signal.SIGKILL)
                seen.append(text[-300:])
            return
        time.sleep(0.5)


@pytest.mark.last
def test_a_node_that_does_not_come_back_stops_the_run_there(cluster, lvs, container):
    # lvs1 runs the image's 6.1: the run installs 6.12, then reboots it into the kill.
    assert node_kernel(cluster, lvs)["release"].startswith(OLD_SERIES)
    files = vm.VmFiles.of(lvs, vm.STATE_DIR)
    stop, seen = threading.Event(), []
    killer = threading.Thread(
        target=_kill_when_shutting_down,
        args=(files.log, lambda: vm.status(lvs, vm.STATE_DIR).pid, stop, seen),
        daemon=True,
    )
    events = Events(cluster, "kernel-rollout-lost", "saltyard/kernel/*")
    killer.start()
    try:
        code, text = orchestrate(cluster, {"targets": [lvs, container], "reboot_timeout": 30})
        tags = events.tags()
    finally:
        stop.set()
        killer.join(10)
        events.stop()
        # Put lvs1 back (it boots the kernel the run made the default, and its minion and
        # keepalived come back by themselves), without waiting: no test runs after this one.
        vm.stop(lvs, vm.STATE_DIR, timeout=5)
        vm.start(cluster.inventory.node(lvs), cluster.inventory, vm.STATE_DIR)
    assert seen, "the VM never started shutting down"
    assert code != 0, text
    # The run installed 6.12 and GRUB's default (read back from lvs1) was it before the reboot;
    # that a VM boots the new kernel through its GRUB is the agent-vm rollout's test.
    assert (
        f"{lvs}: reboot failed: the minion did not come back within 30 s of the reboot into "
        f"{NEW_SERIES}"
    ) in text, text
    assert f"saltyard/kernel/{lvs}/install/ok" in tags, tags
    assert f"saltyard/kernel/{lvs}/reboot/failed" in tags, tags
    # Nothing after lvs1 ran: the container's only event is its check (before any node's work).
    others = [t for t in tags if t.startswith(f"saltyard/kernel/{container}/")]
    assert others == [f"saltyard/kernel/{container}/check/skipped"], tags
