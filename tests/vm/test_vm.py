"""A node of kind vm for real: the cached VM image booted under QEMU (no KVM) on a Docker network
that this module creates and removes, reached over SSH like the cluster reaches lvs1.

Needs root, a Docker engine, qemu-system-x86 and /dev/net/tun; the first run builds the VM image
from the Debian mirror (about two minutes), later runs find it cached. Booting takes about half a
minute. Nothing here touches the local cluster or its network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from saltyard import inventory
from saltyard.localcluster import image, vm
from saltyard.localcluster.progress import step

# Not "saltyard-...": an older `saltyard cluster down` removed every network whose name
# contained the cluster network's.
NETWORK = "sy-vmtest"
LABEL = "saltyard.test=vm"
SUBNET = "172.31.99.0/24"
GATEWAY = "172.31.99.1"
IP_RANGE = "172.31.99.0/25"  # Docker's half; the VM lives in the other one
NODE = "vmtest1"
ADDRESS = "172.31.99.140"
PEER = "172.31.99.20"
VIP = "172.31.99.200"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (tap devices)"
    for program, package in (
        (vm.QEMU, "qemu-system-x86"),
        ("debootstrap", "debootstrap"),
        ("debugfs", "e2fsprogs"),
        ("ssh", "openssh-client"),
        ("docker", "docker.io"),
    ):
        if shutil.which(program) is None:
            return f"{program} is not installed ({package})"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _remove_network() -> None:
    found = run(["docker", "network", "ls", "-q", "--filter", f"name=^{NETWORK}$"]).stdout.split()
    if not found:
        return
    labels = run(["docker", "network", "inspect", "-f", "{{json .Labels}}", NETWORK]).stdout
    assert '"saltyard.test":"vm"' in labels, f"network {NETWORK} exists and is not this test's"
    run(["docker", "network", "rm", NETWORK])


@pytest.fixture(scope="module")
def network():
    _remove_network()  # left over by an interrupted run
    created = run(
        [
            "docker",
            "network",
            "create",
            "--label",
            LABEL,
            "--subnet",
            SUBNET,
            "--gateway",
            GATEWAY,
            "--ip-range",
            IP_RANGE,
            NETWORK,
        ],  # fmt: skip
    )
    assert created.returncode == 0, created.stderr
    yield NETWORK
    _remove_network()


@pytest.fixture(scope="module")
def vm_inventory(tmp_path_factory) -> inventory.Inventory:
    data = {
        "cluster": {
            "name": "saltyard-vmtest",
            "domain": "vmtest.test",
            "network": {
                "name": NETWORK,
                "subnet": SUBNET,
                "gateway": GATEWAY,
                "ip_range": IP_RANGE,
            },
        },
        "nodes": [
            {"name": "master", "address": "172.31.99.10", "roles": ["salt-master"]},
            {"name": NODE, "address": ADDRESS, "roles": ["lvs"], "kind": "vm"},
        ],
    }
    path = tmp_path_factory.mktemp("vm-inventory") / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return inventory.load(path)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vm-state")


@pytest.fixture(scope="module")
def booted(request, network, vm_inventory, state_dir):
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        started = time.monotonic()
        vm.build()
        built = time.monotonic()
        try:
            vm.start(vm_inventory.node(NODE), vm_inventory, state_dir, memory_mb=768)
            vm.wait_ssh(NODE, state_dir, timeout=300)
            step(
                f"VM test: image {built - started:.0f} s, boot to SSH "
                f"{time.monotonic() - built:.0f} s"
            )
        except BaseException:
            vm.destroy(NODE, state_dir)
            raise
    yield state_dir
    with capture.global_and_fixture_disabled():
        vm.destroy(NODE, state_dir)


def sh(state_dir: Path, script: str, timeout: float = 60) -> str:
    proc = vm.ssh(NODE, ["sh", "-c", script], state_dir, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout}"
    return proc.stdout


def test_hostname_address_and_hosts(booted):
    assert sh(booted, "hostname").strip() == NODE
    assert f"inet {ADDRESS}/24" in sh(booted, "ip -4 -o addr show")
    assert f"default via {GATEWAY}" in sh(booted, "ip route")
    hosts = sh(booted, "cat /etc/hosts")
    assert "172.31.99.10\tmaster" in hosts and f"{ADDRESS}\t{NODE}" in hosts


def test_debian_kernel_of_its_own(booted):
    release = sh(booted, "uname -r").strip()
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", release).groups())
    assert (major, minor) >= (4, 4), release
    assert release.endswith("-cloud-amd64"), release
    assert "Debian" in sh(booted, "cat /proc/version")
    assert release != os.uname().release


def test_root_logs_in_by_key_only(booted):
    config = sh(booted, "sshd -T")
    assert "permitrootlogin without-password" in config
    assert "passwordauthentication no" in config
    assert sh(booted, "stat -c %a /root/.ssh/authorized_keys").strip() == "600"


def test_ipvs_works_inside(booted):
    sh(booted, "modprobe ip_vs")
    sh(booted, f"ipvsadm -A -t {VIP}:5000 -s rr")
    sh(booted, f"ipvsadm -a -t {VIP}:5000 -r {PEER}:5000 -m")
    table = sh(booted, "ipvsadm -Ln")
    sh(booted, "ipvsadm -C")
    assert re.search(rf"TCP\s+{re.escape(VIP)}:5000 rr", table), table
    assert re.search(rf"->\s+{re.escape(PEER)}:5000\s+Masq", table), table


def test_a_container_on_the_network_reaches_the_vm(booted):
    node_image = image.build()
    probe = run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            NETWORK,
            "--ip",
            PEER,
            node_image,
            "timeout",
            "20",
            "bash",
            "-c",
            f"exec 3<>/dev/tcp/{ADDRESS}/22 && head -c 4 <&3",
        ],  # fmt: skip
        timeout=90,
    )
    assert probe.stdout == "SSH-", probe.stderr


def test_cluster_exec_and_testinfra_reach_the_vm(booted, vm_inventory, monkeypatch):
    from saltyard.localcluster import cluster as cluster_mod
    from tests.convergence.helpers import vm_host

    monkeypatch.setattr(cluster_mod, "STATE_DIR", booted)
    cluster = cluster_mod.Cluster(inventory_path=vm_inventory.path)
    assert cluster.exec(NODE, ["hostname"]) == (0, f"{NODE}\n")
    # The words arrive as given, and the exit status comes back.
    assert cluster.exec(NODE, ["sh", "-c", "echo 'a  b'; exit 3"], check=False) == (3, "a  b\n")
    h = vm_host(ADDRESS, booted)
    assert h.check_output("hostname") == NODE
    assert h.service("ssh").is_running
    assert h.file("/root/.ssh/authorized_keys").mode == 0o600


def test_start_again_leaves_it_running(booted, vm_inventory):
    before = vm.status(NODE, booted)
    again = vm.start(vm_inventory.node(NODE), vm_inventory, booted)
    assert again.running and again.pid == before.pid


def test_stop_powers_off_and_removes_the_tap(booted):
    before = vm.status(NODE, booted)
    assert before.running and Path("/sys/class/net", before.tap).exists()
    started = time.monotonic()
    vm.stop(NODE, booted, timeout=60)
    after = vm.status(NODE, booted)
    assert not after.running and after.pid is None
    assert not Path("/sys/class/net", before.tap).exists()
    # A clean ACPI power-off, not the kill that follows a timeout.
    assert time.monotonic() - started < 60
    assert "Power down" in before.log.read_text(errors="replace")
    assert before.disk.exists(), "stop keeps the disk; destroy removes it"
    vm.destroy(NODE, booted)
    assert not before.disk.exists()
