"""saltyard/localcluster/vm.py without booting anything, and how the cluster, the pyinfra
bootstrap and the testinfra helper reach a node of kind vm."""

from __future__ import annotations

import os
import runpy
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from saltyard import inventory
from saltyard.localcluster import vm
from tests.support.components import require_program

REPO = Path(__file__).resolve().parents[2]

INVENTORY = {
    "cluster": {
        "name": "t",
        "domain": "t.test",
        "network": {
            "name": "t-net",
            "subnet": "10.9.0.0/24",
            "gateway": "10.9.0.1",
            "ip_range": "10.9.0.0/25",
        },
    },
    "nodes": [
        {"name": "boss", "address": "10.9.0.10", "roles": ["salt-master"]},
        {"name": "lvs1", "address": "10.9.0.140", "roles": ["lvs"], "kind": "vm"},
    ],
}


@pytest.fixture
def inv_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(INVENTORY))
    monkeypatch.setenv("SALTYARD_INVENTORY", str(path))
    return path


@pytest.fixture
def inv(inv_path) -> inventory.Inventory:
    return inventory.load(inv_path)


# --- names ------------------------------------------------------------------------------------


def test_tap_name_fits_ifnamsiz_and_is_stable():
    long = "a-very-long-node-name-indeed"
    assert len(vm.tap_name("saltyard-local", long)) <= 15
    assert vm.tap_name("c", "lvs1") == vm.tap_name("c", "lvs1")
    # Two clusters on one machine never share a tap.
    assert vm.tap_name("c", "lvs1") != vm.tap_name("d", "lvs1")
    assert vm.tap_name("c", "lvs1").startswith("vm-lvs1-")


def test_mac_address_is_qemu_prefixed_and_stable():
    mac = vm.mac_address("c", "lvs1")
    assert mac.startswith("52:54:00:") and len(mac.split(":")) == 6
    assert mac == vm.mac_address("c", "lvs1") != vm.mac_address("c", "lvs2")


def test_files_live_in_the_state_dir(tmp_path):
    files = vm.VmFiles.of("lvs1", tmp_path)
    assert files.disk == tmp_path / "vm" / "lvs1.img"
    assert files.log == tmp_path / "vm" / "lvs1.log"
    assert vm.ssh_key_path(tmp_path) == tmp_path / "ssh" / "id_ed25519"


# --- the Docker network -----------------------------------------------------------------------


def network(ip_range="10.9.0.0/25", containers=None, driver="bridge") -> dict:
    config = {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}
    if ip_range:
        config["IPRange"] = ip_range
    return {
        "Name": "t-net",
        "Id": "0123456789abcdef0123",
        "Driver": driver,
        "IPAM": {"Config": [config]},
        "Containers": containers or {},
        "Options": {},
    }


def test_check_address_accepts_the_free_half():
    assert vm.check_address("lvs1", "10.9.0.140", network())["Gateway"] == "10.9.0.1"


@pytest.mark.parametrize(
    ("address", "attrs", "expected"),
    [
        ("10.9.0.40", network(), ["'lvs1'", "10.9.0.40", "inside", "--ip-range", "10.9.0.0/25"]),
        ("10.9.0.140", network(ip_range=None), ["'t-net'", "no --ip-range", "10.9.0.140"]),
        ("10.8.0.140", network(), ["10.8.0.140", "outside", "10.9.0.0/24"]),
        (
            "10.9.0.140",
            network(containers={"x": {"Name": "intruder", "IPv4Address": "10.9.0.140/24"}}),
            ["already used", "'intruder'"],
        ),
    ],
)
def test_check_address_refuses(address, attrs, expected):
    with pytest.raises(vm.VmError) as excinfo:
        vm.check_address("lvs1", address, attrs)
    for part in expected:
        assert part in str(excinfo.value), (part, str(excinfo.value))


def test_bridge_name():
    assert vm.bridge_name(network()) == "br-0123456789ab"
    named = network() | {"Options": {"com.docker.network.bridge.name": "docker9"}}
    assert vm.bridge_name(named) == "docker9"
    with pytest.raises(vm.VmError, match="macvlan"):
        vm.bridge_name(network(driver="macvlan"))


def test_host_nameservers_skip_loopback(tmp_path):
    stub = tmp_path / "stub"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    upstream = tmp_path / "upstream"
    upstream.write_text("# resolved\nnameserver 10.0.0.2\nnameserver ::1\nnameserver 10.0.0.3\n")
    assert vm.host_nameservers((str(stub), str(upstream))) == ["10.0.0.2", "10.0.0.3"]
    assert vm.host_nameservers((str(stub),)) == []


# --- a VM's configuration and command lines ---------------------------------------------------


def test_guest_files(inv):
    files = vm.guest_files(
        inv.node("lvs1"), inv, "10.9.0.1", "52:54:00:aa:bb:cc", "ssh-ed25519 AAAA k\n", ["10.0.0.2"]
    )
    assert files["/etc/hostname"] == ("lvs1\n", 0o644)
    network_file, _ = files["/etc/systemd/network/10-saltyard.network"]
    assert "MACAddress=52:54:00:aa:bb:cc" in network_file
    assert "Address=10.9.0.140/24" in network_file
    assert "Gateway=10.9.0.1" in network_file
    hosts, _ = files["/etc/hosts"]
    assert "10.9.0.10\tboss" in hosts and "10.9.0.140\tlvs1" in hosts
    assert files["/root/.ssh/authorized_keys"] == ("ssh-ed25519 AAAA k\n", 0o600)
    assert files["/etc/resolv.conf"][0] == "nameserver 10.0.0.2\n"


def _partitioned_disk(tmp_path, root: Path | None = None) -> Path:
    """A small disk laid out as the VM image is: the filesystem at PART_OFFSET."""
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(vm.PART_OFFSET + 8 * 1024 * 1024)
    extra = ["-d", root] if root else []
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-E", f"offset={vm.PART_OFFSET}", *extra, disk, "8M"],
        check=True,
        capture_output=True,
    )
    return disk


def test_write_guest_files_into_the_root_partition(tmp_path):
    require_program("mkfs.ext4", "e2fsprogs")
    require_program("debugfs", "e2fsprogs")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("base\n")
    (root / "root/.ssh").mkdir(parents=True)
    disk = _partitioned_disk(tmp_path, root)
    mbr_before = disk.read_bytes()[: vm.PART_OFFSET]
    files = {
        "/etc/hostname": ("lvs1\n", 0o644),
        "/root/.ssh/authorized_keys": ("ssh-ed25519 AAAA k\n", 0o600),
    }
    vm.write_guest_files(disk, files)

    def stat_of(path: str) -> str:
        return subprocess.run(
            ["debugfs", "-R", f"stat {path}", f"{disk}?offset={vm.PART_OFFSET}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    written = stat_of("/etc/hostname")  # inode, times to the nanosecond
    vm.write_guest_files(disk, files)  # a restart: the files hold their content, left alone
    assert stat_of("/etc/hostname") == written
    vm.write_guest_files(disk, {"/etc/hostname": ("lvs2\n", 0o644)})  # a changed one: rewritten
    assert (
        "lvs2"
        in subprocess.run(
            ["debugfs", "-R", "cat /etc/hostname", f"{disk}?offset={vm.PART_OFFSET}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    stat = subprocess.run(
        ["debugfs", "-R", "stat /root/.ssh/authorized_keys", f"{disk}?offset={vm.PART_OFFSET}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Mode:  0600" in stat and "User:     0" in stat
    check = subprocess.run(
        ["e2fsck", "-fn", f"{disk}?offset={vm.PART_OFFSET}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    # Nothing before the partition (where the MBR and GRUB live) was touched.
    assert disk.read_bytes()[: vm.PART_OFFSET] == mbr_before


def test_write_guest_files_notices_a_failed_write(tmp_path):
    require_program("debugfs", "e2fsprogs")
    disk = _partitioned_disk(tmp_path)
    with pytest.raises(vm.VmError, match="/no/such/dir/file"):
        vm.write_guest_files(disk, {"/no/such/dir/file": ("x\n", 0o644)})


def test_mbr_partition_table_is_what_the_kernel_reads(tmp_path):
    """One bootable Linux partition from PART_START, as Linux's and GRUB's msdos parsers (and
    sfdisk, when the host has it) read an MBR."""
    table = vm.mbr_partition_table(vm.PART_START, 1000, 0x12345678)
    assert len(table) == 72 and table[-2:] == b"\x55\xaa"
    status, ptype = table[6], table[6 + 4]
    start, count = int.from_bytes(table[14:18], "little"), int.from_bytes(table[18:22], "little")
    assert (status, ptype, start, count) == (0x80, 0x83, vm.PART_START, 1000)
    assert table[22:70] == bytes(48)  # the other three entries are empty
    if shutil.which("sfdisk"):
        disk = tmp_path / "d.img"
        disk.write_bytes(bytes(440) + table + bytes((vm.PART_START + 1000) * 512 - 512))
        dump = subprocess.run(
            ["sfdisk", "-d", disk], capture_output=True, text=True, check=True
        ).stdout
        assert "label-id: 0x12345678" in dump
        assert f"start=        {vm.PART_START}, size=        1000, type=83, bootable" in dump


def test_release_order_is_debians():
    releases = ["6.1.0-9-cloud-amd64", "6.12.118+deb12-cloud-amd64", "6.1.0-50-cloud-amd64"]
    assert sorted(releases, key=vm._release_key) == [
        "6.1.0-9-cloud-amd64",
        "6.1.0-50-cloud-amd64",
        "6.12.118+deb12-cloud-amd64",
    ]


def test_qemu_command(tmp_path):
    files = vm.VmFiles.of("lvs1", tmp_path)
    cmd = vm.qemu_command("lvs1", files, "vm-lvs1-abcd", "52:54:00:aa:bb:cc", 512)
    text = shlex.join(cmd)
    assert cmd[0] == "qemu-system-x86_64"
    assert "-accel tcg" in text and "kvm" not in text
    assert "-m 512 -smp 1" in text
    assert f"file={files.disk},format=raw,if=virtio" in text
    assert "tap,id=n0,ifname=vm-lvs1-abcd,script=no,downscript=no" in text
    assert "mac=52:54:00:aa:bb:cc" in text
    # The disk's own bootloader boots it: no kernel handed in from outside, and no
    # -no-reboot, so that a reboot inside goes through the BIOS and GRUB again.
    assert "-kernel" not in cmd and "-append" not in cmd and "-no-reboot" not in cmd
    assert f"file:{files.log}" in text and str(files.pidfile) in text
    assert cmd[-1] == "-daemonize"


def test_ssh_command_keeps_the_words(tmp_path):
    cmd = vm.ssh_command("10.9.0.140", tmp_path / "key", ["sh", "-c", "echo 'a b'; exit 3"])
    assert cmd[:3] == ["ssh", "-i", str(tmp_path / "key")]
    assert "StrictHostKeyChecking=no" in cmd and "UserKnownHostsFile=/dev/null" in cmd
    assert cmd[-2] == "root@10.9.0.140"
    assert shlex.split(cmd[-1]) == ["sh", "-c", "echo 'a b'; exit 3"]


def test_image_key_follows_the_inputs(monkeypatch):
    before = vm.image_key()
    monkeypatch.setattr(vm, "PACKAGES", vm.PACKAGES + ("ethtool",))
    assert vm.image_key() != before


def test_the_image_carries_the_base_role_packages_and_follows_their_list(tmp_path, monkeypatch):
    import yaml

    defaults = yaml.safe_load(vm.BASE_ROLE_DEFAULTS.read_text())
    assert set(defaults["base"]["packages"]) <= set(vm.packages())
    assert len(vm.packages()) == len(set(vm.packages()))
    before = vm.image_key()
    defaults["base"]["packages"].append("htop")
    changed = tmp_path / "defaults.yaml"
    changed.write_text(yaml.safe_dump(defaults))
    monkeypatch.setattr(vm, "BASE_ROLE_DEFAULTS", changed)
    assert "htop" in vm.packages()
    assert vm.image_key() != before


def test_build_uses_the_cache_and_prunes_only_stale_images(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "CACHE_DIR", tmp_path)
    key = vm.image_key()
    (tmp_path / key).mkdir()
    (tmp_path / key / "disk.img").write_text("")
    monkeypatch.setattr(vm, "_build", lambda key: pytest.fail("a cached image was rebuilt"))
    assert vm.build().disk == tmp_path / key / "disk.img"
    assert (tmp_path / key / "used").exists()

    old = time.time() - (vm.KEEP_UNUSED_DAYS + 1) * 86400
    for name in ("stale", "recent", "build-x-interrupted"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "used").touch()
    os.utime(tmp_path / "stale" / "used", (old, old))
    vm._prune(key)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted([key, "recent"])


def test_ssh_key_is_private(tmp_path):
    require_program("ssh-keygen", "openssh-client")
    key = vm.ensure_ssh_key(tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.parent.stat().st_mode & 0o777 == 0o700
    assert key.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    assert vm.ensure_ssh_key(tmp_path).read_bytes() == key.read_bytes()  # made once


def test_check_host_names_a_missing_qemu(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(
        vm.shutil, "which", lambda p: None if p == "qemu-system-x86_64" else real(p)
    )
    with pytest.raises(vm.VmError, match="qemu-system-x86_64 not found.*qemu-system-x86"):
        vm.check_host()


def test_status_of_a_vm_never_started(tmp_path):
    st = vm.status("lvs1", tmp_path)
    assert not st.running and st.pid is None and st.tap is None
    assert vm.recorded(tmp_path) == []


def test_status_ignores_a_stale_pidfile(tmp_path):
    files = vm.VmFiles.of("lvs1", tmp_path)
    files.pidfile.parent.mkdir(parents=True)
    files.pidfile.write_text("1\n")  # alive, but not this VM's QEMU
    files.meta.write_text('{"address": "10.9.0.140", "tap": "vm-lvs1-abcd"}')
    st = vm.status("lvs1", tmp_path)
    assert not st.running and st.address == "10.9.0.140"
    assert vm.recorded(tmp_path) == ["lvs1"]


# --- bootstrap: the pyinfra inventory ---------------------------------------------------------


def pyinfra_hosts(monkeypatch, state_dir: Path, connect: str) -> dict:
    monkeypatch.setenv("SALTYARD_CONNECT", connect)
    monkeypatch.setenv("SALTYARD_STATE_DIR", str(state_dir))
    monkeypatch.setenv("SALTYARD_PROFILE", "full")
    module = runpy.run_path(str(REPO / "saltyard/bootstrap/pyinfra_inventory.py"))
    return dict(module["nodes"])


def test_pyinfra_inventory_reaches_vms_over_ssh(inv_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SALTYARD_SSH_USER", "admin")  # for real hosts only
    hosts = pyinfra_hosts(monkeypatch, tmp_path, "docker")
    assert set(hosts) == {"@docker/saltyard-boss", "10.9.0.140"}
    data = hosts["10.9.0.140"]
    assert data["ssh_user"] == "root"
    assert data["ssh_key"] == str(tmp_path / "ssh" / "id_ed25519")
    assert data["ssh_strict_host_key_checking"] == "off"
    assert data["ssh_known_hosts_file"] == "/dev/null"
    # Same deploy data as a container: it joins the same master with its pre-seeded key.
    assert data["saltyard_minion_id"] == "lvs1"
    assert data["saltyard_master_address"] == "10.9.0.10"
    assert not data["saltyard_is_master"]
    assert "ssh_user" not in hosts["@docker/saltyard-boss"]


def test_pyinfra_inventory_for_real_hosts_ignores_kind(inv_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SALTYARD_SSH_USER", "admin")
    hosts = pyinfra_hosts(monkeypatch, tmp_path, "ssh")
    assert set(hosts) == {"10.9.0.10", "10.9.0.140"}
    assert {h["ssh_user"] for h in hosts.values()} == {"admin"}
    assert all("ssh_key" not in h for h in hosts.values())


# --- the cluster ------------------------------------------------------------------------------


class FakeContainer:
    status = "running"

    def __init__(self, calls):
        self.calls = calls

    id = "c0ffee"
    name = "saltyard-boss"

    def exec_run(self, cmd, demux=False, environment=None):
        # Cluster.exec wraps the command (engine.ContainerExec): sh -c WRAPPER, the command's
        # words in the environment.
        assert cmd[:2] == ["/bin/sh", "-c"] and len(cmd) == 3
        self.calls.append(("docker", shlex.split(environment["SALTYARD_EXEC_ARGV"])))
        return 0, f"from the container\n{environment['SALTYARD_EXEC_END']} 0\n".encode()


class FakeEngine:
    def __init__(self):
        self.calls = []
        outer = self

        class Containers:
            def get(self, name):
                outer.calls.append(("get", name))
                return FakeContainer(outer.calls)

            def list(self, **kwargs):
                return []

        class Listing:
            def list(self, **kwargs):
                return []

        class Network:
            def __init__(self, name):
                self.name = name

            def remove(self):
                outer.calls.append(("remove network", self.name))

        class Networks:
            def list(self, names=()):
                # Docker's name filter matches substrings.
                return [Network(n) for n in ("t-net", "t-net-vmtest") if names[0] in n]

        self.containers = Containers()
        self.volumes = Listing()
        self.networks = Networks()


@pytest.fixture
def cluster(inv_path, monkeypatch):
    from saltyard.localcluster import cluster as cluster_mod

    engine = FakeEngine()
    monkeypatch.setattr(cluster_mod.engine_mod, "client", lambda: engine)
    return cluster_mod.Cluster(inventory_path=str(inv_path))


def test_exec_picks_ssh_for_a_vm(cluster, monkeypatch):
    from saltyard.localcluster import cluster as cluster_mod

    seen = []

    def fake_ssh(name, cmd, state_dir):
        seen.append((name, cmd, state_dir))
        return subprocess.CompletedProcess([], 0, "from the vm\n")

    monkeypatch.setattr(cluster_mod.vm, "ssh", fake_ssh)
    assert cluster.exec("lvs1", ["hostname"]) == (0, "from the vm\n")
    assert seen == [("lvs1", ["hostname"], cluster_mod.STATE_DIR)]
    assert cluster.exec("boss", ["hostname"]) == (0, "from the container\n")
    assert cluster.engine.calls == [("get", "saltyard-boss"), ("docker", ["hostname"])]


def test_exec_on_a_vm_raises_with_the_output(cluster, monkeypatch):
    from saltyard.localcluster import cluster as cluster_mod

    monkeypatch.setattr(
        cluster_mod.vm, "ssh", lambda *a: subprocess.CompletedProcess([], 3, "no such unit\n")
    )
    with pytest.raises(RuntimeError, match="lvs1: systemctl status x exited 3:\nno such unit"):
        cluster.exec("lvs1", ["systemctl", "status", "x"])


def test_up_boots_vms_between_network_and_bootstrap(cluster, monkeypatch):
    from saltyard.localcluster import cluster as cluster_mod

    order = []
    monkeypatch.setattr(cluster_mod.image, "build", lambda: order.append("image") or "img")
    monkeypatch.setattr(
        cluster_mod.engine_mod, "ensure_network", lambda *a: order.append("network")
    )
    monkeypatch.setattr(
        cluster_mod.vm, "start", lambda node, inv, state: order.append(f"start {node.name}")
    )
    monkeypatch.setattr(
        cluster_mod.vm, "wait_ssh", lambda name, state: order.append(f"wait {name}")
    )
    monkeypatch.setattr(cluster, "_wait_systemd", lambda node: order.append(f"systemd {node}"))

    def fake_run(command, **kwargs):
        order.append(" ".join(command))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(cluster_mod.subprocess, "run", fake_run)
    monkeypatch.setattr(
        cluster_mod, "_run_logged", lambda command, env, log: fake_run(command).returncode
    )
    monkeypatch.setattr(cluster, "bootstrap", lambda: order.append("bootstrap"))
    monkeypatch.setattr(cluster, "wait_minions", lambda: order.append("minions"))
    monkeypatch.setattr(cluster, "sync", lambda: order.append("sync"))
    assert cluster.up(highstate=False) is None
    assert order == [
        "image",
        "network",
        "start lvs1",
        # Vagrant makes the containers only, while the VM boots.
        "vagrant up --provider=docker --parallel boss",
        "systemd boss",
        "wait lvs1",
        "systemd lvs1",
        "bootstrap",
        "minions",
        "sync",
    ]


def test_down_removes_every_recorded_vm_first(cluster, monkeypatch, tmp_path):
    from saltyard.localcluster import cluster as cluster_mod

    order = []
    monkeypatch.setattr(cluster_mod, "STATE_DIR", tmp_path)
    for name in ("lvs1", "old-vm"):  # also one the inventory no longer has
        files = vm.VmFiles.of(name, tmp_path)
        files.meta.parent.mkdir(parents=True, exist_ok=True)
        files.meta.write_text("{}")
    monkeypatch.setattr(
        cluster_mod.vm, "destroy", lambda name, state: order.append(f"destroy {name} {state}")
    )
    monkeypatch.setattr(
        cluster_mod.subprocess,
        "run",
        lambda command, **kw: order.append(" ".join(command)) or subprocess.CompletedProcess([], 0),
    )
    cluster.down()
    assert order == [
        f"destroy lvs1 {tmp_path}",
        f"destroy old-vm {tmp_path}",
        "vagrant destroy -f",
    ]
    # Only the cluster's own network goes, not one whose name merely contains it.
    assert cluster.engine.calls == [("remove network", "t-net")]


def test_ensure_network_ignores_a_network_whose_name_contains_it(inv):
    from saltyard.localcluster import engine as engine_mod

    created = []

    class Networks:
        def list(self, names=()):
            other = type("N", (), {"name": "t-net-vmtest", "attrs": {}})()
            return [other]

        def create(self, name, **kwargs):
            created.append(name)

    engine_mod.ensure_network(type("E", (), {"networks": Networks()})(), inv)
    assert created == ["t-net"]


# --- testinfra --------------------------------------------------------------------------------


def test_testinfra_host_for_a_vm_uses_ssh(inv_path):
    from tests.convergence.helpers import host

    backend = host("lvs1").backend
    assert backend.NAME == "ssh"
    assert backend.host.name == "10.9.0.140" and backend.host.user == "root"
    assert backend.ssh_identity_file == str(vm.ssh_key_path(vm.STATE_DIR))
    assert "StrictHostKeyChecking=no" in backend.ssh_extra_args
    command, args = backend._build_ssh_command("true")
    assert "UserKnownHostsFile=/dev/null" in " ".join(command)
    assert host("boss").backend.NAME == "docker"


def test_highstate_reports_each_node_when_it_is_done(cluster, monkeypatch, capsys):
    """One salt CLI per node: the quick node is reported (with its own time) while the slow one
    still runs, a progress line names the slow one, and a silent node is 'no answer'."""
    from saltyard.localcluster import cluster as cluster_mod

    monkeypatch.setattr(cluster_mod, "HIGHSTATE_PROGRESS_SECONDS", 0.6)
    delays = {"boss": 0.0, "lvs1": 1.5}
    calls = []

    def fake_salt(target, *args, timeout=900):
        calls.append((tuple(target), args, timeout))
        (node,) = target
        time.sleep(delays[node])
        state = {"__id__": "x", "result": True, "changes": {"a": 1}}
        return {node: {"file_|-x_|-x_|-managed": state}} if node == "boss" else {}

    monkeypatch.setattr(cluster, "salt", fake_salt)
    reported, reported_at = [], {}
    started = time.monotonic()

    def report(result):
        reported.append(result)
        reported_at[result.minion] = time.monotonic() - started

    results = cluster.highstate(None, "test=True", report=report)
    assert sorted(c[0] for c in calls) == [("boss",), ("lvs1",)]
    assert all(c[1] == ("state.highstate", "test=True") for c in calls)
    assert all(c[2] == cluster_mod.HIGHSTATE_TIMEOUT for c in calls)
    assert [r.minion for r in reported] == ["boss", "lvs1"]
    assert list(results) == ["boss", "lvs1"]
    assert results["boss"].ok and results["boss"].seconds < 0.5
    assert not results["lvs1"].ok and results["lvs1"].errors == ["no answer"]
    assert results["lvs1"].seconds >= 1.5
    # Reported when it was done, not held back to the next progress line (at 0.6 s).
    assert reported_at["boss"] < 0.5, reported_at
    assert "highstate still running on lvs1" in capsys.readouterr().err


def test_the_image_keys_follow_the_salt_wheels_baked_into_them(monkeypatch):
    from saltyard.bootstrap import wheelhouse
    from saltyard.localcluster import image

    vm_before, node_before = vm.image_key(), image.image_tag()
    monkeypatch.setattr(wheelhouse, "dependencies_key", lambda: "another-set-of-pins")
    assert vm.image_key() != vm_before
    assert image.image_tag() != node_before


def test_the_vm_image_carries_consul_and_what_it_depends_on(monkeypatch):
    assert set(vm.CONSUL_DEPENDENCIES) <= set(vm.packages())
    before = vm.image_key()
    monkeypatch.setattr(vm, "CONSUL_SUITE", "trixie")
    assert vm.image_key() != before


def test_the_wheelhouse_key_follows_the_pins(tmp_path, monkeypatch):
    from saltyard.bootstrap import wheelhouse

    assert wheelhouse.requirements()[0] == wheelhouse.SALT_REQUIREMENT
    assert any(r.startswith("py-consul==") for r in wheelhouse.requirements())
    before = wheelhouse.dependencies_key()
    changed = tmp_path / "constraints.txt"
    changed.write_text(wheelhouse.CONSTRAINTS.read_text() + "idna==0.1\n")
    monkeypatch.setattr(wheelhouse, "CONSTRAINTS", changed)
    assert wheelhouse.dependencies_key() != before


def test_the_image_carries_the_relp_package_the_logging_forwarder_installs():
    # The forwarder's package (states/logging/rsyslog.sls) is baked, so agent-vm's first
    # highstate finds it installed instead of running apt under emulation.
    sls = (vm.ROOT / "states" / "logging" / "rsyslog.sls").read_text()
    for package in vm.LOGGING_PACKAGES:
        assert f"- name: {package}\n" in sls, package
        assert package in vm.packages()


def test_the_wheelhouse_names_its_dependencies_key(tmp_path):
    # The deploy compares it with the key an image's venv carries: equal, only the saltyard
    # wheel is installed (saltyard/bootstrap/deploy.py).
    import tarfile

    from saltyard.bootstrap import wheelhouse

    with tarfile.open(wheelhouse.build(tmp_path)) as tar:
        key = tar.extractfile(wheelhouse.WHEELHOUSE_KEY).read().decode().strip()
        names = tar.getnames()
    assert key == wheelhouse.dependencies_key()
    assert any(n.startswith("wheels/saltyard-") for n in names)
    assert any(n.startswith("wheels/salt-3008") for n in names), names
