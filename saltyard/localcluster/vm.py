"""QEMU virtual machines for the nodes whose roles need a kernel of their own (``kind: vm``).

The host kernel lacks IPVS, so the LVS director cannot be a container: it boots as a QEMU VM
(software emulation, no KVM here) with Debian 12's cloud kernel, on the cluster's Docker bridge
through a tap device, with a static address outside Docker's ``--ip-range``. Everything else
treats it like the other nodes: bootstrap and tests reach it over SSH as root with a key pair
generated on the operator's machine (``STATE/ssh``).

A VM boots like a real machine: SeaBIOS, GRUB from the disk's MBR, the kernel GRUB's saved
default names (``/boot/grub/grubenv``). So a kernel installed inside the VM with apt, made the
default with ``grub-set-default``, is the one the next reboot runs (the kernel role does that,
docs/kernel.md). The disk is an MBR-partitioned raw image: GRUB's ``core.img`` in the gap before
partition 1, which starts 1 MiB in and holds the ext4 root. It is built with no loop device and
no mount (``mkfs.ext4 -E offset= -d``; docs/notes/vm-bootloader.md).

Files: the base disk is built once per machine and cached by a hash of its inputs in
``/var/cache/saltyard/vm-image/<hash>/``; each VM gets a sparse copy of it
(``STATE/vm/NODE.img``) into which its own configuration is written with ``debugfs`` at the
partition's offset (no mount needed), its serial console log (``NODE.log``), pid file, QMP
socket and what it was started with (``NODE.json``).

    build()                           the base image (cached)
    start(node, inventory, STATE)     boot a VM unless it runs (its disk is kept across restarts)
    wait_ssh(name, STATE)             until sshd answers, bounded
    boot_id(name, STATE)              which boot the VM is in (changes at every boot)
    reboot(name, STATE)               reboot from inside and wait until it answers again, bounded
    stop(name, STATE) / destroy(...)  clean power-off, then kill; remove the tap (and the files)
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from saltyard.bootstrap import wheelhouse
from saltyard.inventory import Inventory, Node
from saltyard.localcluster import image
from saltyard.localcluster.progress import step

ROOT = Path(__file__).resolve().parent.parent.parent
STATE_DIR = ROOT / ".state"
# Per machine, like the node image in Docker's store: every checkout (and CI clone) and the
# tests share it, so the image is built once.
CACHE_DIR = Path(os.environ.get("SALTYARD_VM_CACHE") or "/var/cache/saltyard/vm-image")
# Images of other inputs (another checkout's recipe) stay this long after their last use.
KEEP_UNUSED_DAYS = 14

# The node image's packages plus what a VM needs to boot and be reached: a kernel (the cloud
# flavour: virtio drivers, small), udev and kmod for its modules, sshd, and the LVS tools
# (ipvsadm, and keepalived, which the lvs state installs anyway: the VM tests run both against
# the VM's kernel without reaching a package mirror from the VM), and xfsprogs: the docker
# preflight reads xfs_info, and the VM tests format and mount XFS (ftype=0 and ftype=1), which
# the host's kernel may not mount.
#
# GRUB: grub-pc-bin (the BIOS modules, boot.img, grub-mkimage) and grub2-common (update-grub,
# grub-set-default and the kernel hook that runs update-grub after a kernel install). Never
# grub-pc: its postinst runs grub-install on the disks debconf names, which inside the build
# chroot are the build machine's own.
PACKAGES = image.PACKAGES + (
    "linux-image-cloud-amd64",
    "grub-pc-bin",
    "grub2-common",
    "udev",
    "kmod",
    "openssh-server",
    "ipvsadm",
    "keepalived",
    "xfsprogs",
)
# And the Docker engine for a VM mesos agent (the agent-vm node): emulated, its first highstate's
# docker.io install (and apparmor, which the docker role adds on a kernel with AppArmor on) took
# minutes more. The image leaves the engine disabled (DISABLED_UNITS): lvs1 never runs it, and on
# an agent the docker role writes its configuration, then enables and starts it.
DOCKER_PACKAGES = ("docker.io", "apparmor")
DISABLED_UNITS = ("docker.service", "docker.socket", "containerd.service")
# And RELP for rsyslog, which the logging forwarder of every docker node installs
# (states/logging/rsyslog.sls): emulated, its apt-get update and install took 93 s of agent-vm's
# first highstate, the longest state of that run. Unused until the forwarder's configuration
# loads it.
LOGGING_PACKAGES = ("rsyslog-relp",)
# And the base role's default packages (states/base/defaults.yaml), which every node's first
# highstate installs: emulated, that install took the VM about ten minutes of its first
# highstate; here debootstrap does it at the host's speed. The state still runs (and checks
# them) on the VM as on every node; the containers keep installing them themselves.
BASE_ROLE_DEFAULTS = ROOT / "states" / "base" / "defaults.yaml"
# And Consul, which every node's first highstate installs (the consul role): the local site
# takes it from Debian bullseye (pillar/sites/local.sls), and emulated, the apt-get update and
# install of it took lvs1 four and a half minutes. The image gets it from the same suite, pinned
# the same way; the state still lays down the source and the pin, and finds the package
# installed. Its dependencies come from bookworm with the rest.
CONSUL_SUITE = "bullseye"
CONSUL_PACKAGES = ("consul",)
CONSUL_DEPENDENCIES = ("adduser", "pipexec")


def packages() -> tuple[str, ...]:
    """Every package the VM image carries, in a stable order."""
    base = yaml.safe_load(BASE_ROLE_DEFAULTS.read_text())["base"]["packages"]
    wanted = PACKAGES + DOCKER_PACKAGES + LOGGING_PACKAGES + tuple(base) + CONSUL_DEPENDENCIES
    return tuple(dict.fromkeys(wanted))


def _install_consul(root: Path) -> None:
    """Install CONSUL_PACKAGES from CONSUL_SUITE into the rootfs, then take the extra suite away
    again (the consul state writes its own source and pin on the node)."""
    source = root / "etc/apt/sources.list.d/saltyard-build-consul.list"
    pin = root / "etc/apt/preferences.d/saltyard-build-consul"
    source.write_text(f"deb {image.MIRROR} {CONSUL_SUITE} main\n")
    # Only the consul packages may come from that suite (as the site's pin says).
    pin.write_text(
        f"Package: {' '.join(CONSUL_PACKAGES)}\nPin: release n={CONSUL_SUITE}\n"
        "Pin-Priority: 500\n\n"
        f"Package: *\nPin: release n={CONSUL_SUITE}\nPin-Priority: -1\n"
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
    step(f"installing {', '.join(CONSUL_PACKAGES)} from {CONSUL_SUITE} into the VM image")
    try:
        for command in (
            ["apt-get", "-q", "update"],
            ["apt-get", "-q", "-y", "--no-install-recommends", "install", *CONSUL_PACKAGES],
        ):
            subprocess.run(
                ["chroot", str(root), *command], check=True, env=env, stdout=subprocess.DEVNULL
            )
    finally:
        source.unlink(missing_ok=True)
        pin.unlink(missing_ok=True)


# Sparse: only what is written takes space. Room for Salt's venv, the roles' packages and a
# second kernel (the kernel role installs one in the VM).
DISK_MIB = 3072
# Partition 1 (the root filesystem) starts at this sector (1 MiB); the sectors before it hold
# the MBR and GRUB's core.img, as on a disk partitioned by Debian's installer.
PART_START = 2048
SECTOR = 512
PART_OFFSET = PART_START * SECTOR
FS_LABEL = "saltyard-vm"
MEMORY_MB = 768
# A mesos agent runs dockerd, containerd and its tasks beside the minion.
AGENT_MEMORY_MB = 1536
CPUS = 1
# QEMU runs at this niceness (negative: ahead of the containers). Without KVM the VM's one
# vCPU is one host thread emulating every instruction, and the VM is the slowest node of every
# cluster-wide step; at equal priority, the ten containers' highstates (load 30 on 2 cores)
# left it a thirtieth of the CPU. Ahead of them it takes one core and they share the other.
# Where the kernel groups tasks by session (autogroup, on here: kernel.sched_autogroup_enabled
# is 1), QEMU's -daemonize gives it a session of its own, weighed as one entity beside Docker's
# cgroup, and a niceness counts only inside its session: there it changes nothing
# (scripts/test.sh weighs Docker's group instead).
NICENESS = -10
# Bump when the build steps below change in a way the inputs do not show.
RECIPE_VERSION = 5

QEMU = "qemu-system-x86_64"
SSH_USER = "root"
# The VMs are this machine's own, rebuilt with new host keys at will: no known_hosts to keep.
SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    # A VM that dies under a running command ends the command within a minute.
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
)


class VmError(RuntimeError):
    """A VM cannot be built, started or reached; the message names the cause."""


# --- names and paths ---------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def tap_name(cluster: str, node: str) -> str:
    """The VM's tap device: at most 15 characters (IFNAMSIZ), unique per cluster and node."""
    return f"vm-{node[:7]}-{_digest(cluster, node)[:4]}"


def mac_address(cluster: str, node: str) -> str:
    """A fixed MAC per cluster and node (QEMU's 52:54:00 prefix), so the guest's network file
    can match its NIC."""
    tail = _digest("mac", cluster, node)[:6]
    return "52:54:00:" + ":".join(tail[i : i + 2] for i in range(0, 6, 2))


@dataclass(frozen=True)
class VmFiles:
    disk: Path
    log: Path
    pidfile: Path
    qmp: Path
    meta: Path

    @classmethod
    def of(cls, name: str, state_dir: Path) -> VmFiles:
        base = Path(state_dir) / "vm" / name
        return cls(
            disk=base.with_suffix(".img"),
            log=base.with_suffix(".log"),
            pidfile=base.with_suffix(".pid"),
            qmp=base.with_suffix(".qmp"),
            meta=base.with_suffix(".json"),
        )


def ssh_key_path(state_dir: Path) -> Path:
    return Path(state_dir) / "ssh" / "id_ed25519"


def ensure_ssh_key(state_dir: Path) -> Path:
    """The key pair the VMs trust for root, made once on this machine (never committed)."""
    key = ssh_key_path(state_dir)
    if not key.exists():
        _need("ssh-keygen", "openssh-client")
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "saltyard-local-vm", "-f", key],
            check=True,
        )
    key.chmod(0o600)
    return key


def ssh_command(address: str, key: Path, cmd: list[str] | None = None) -> list[str]:
    """`ssh` to a VM as root; cmd is quoted so that the remote shell sees the same words."""
    command = ["ssh", "-i", str(key), *SSH_OPTIONS, f"{SSH_USER}@{address}"]
    if cmd:
        command.append(shlex.join(cmd))
    return command


# --- host checks -------------------------------------------------------------------------------


def _need(program: str, package: str) -> None:
    if shutil.which(program) is None:
        raise VmError(
            f"{program} not found: install the Debian package {package} "
            "(scripts/host-setup.sh installs it)"
        )


def check_host() -> None:
    """Refuse, with the reason, a machine that cannot run the VMs."""
    _need(QEMU, "qemu-system-x86")
    _need("ip", "iproute2")
    _need("debugfs", "e2fsprogs")
    _need("ssh", "openssh-client")
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except FileNotFoundError:
        raise VmError(
            "/dev/net/tun does not exist: a VM joins the cluster network through a tap device, "
            "which needs the kernel's TUN/TAP driver"
        ) from None
    except PermissionError:
        raise VmError(
            "cannot open /dev/net/tun (permission denied): creating the VMs' tap devices needs "
            "root (CAP_NET_ADMIN)"
        ) from None


def network_attrs(name: str) -> dict:
    proc = subprocess.run(
        ["docker", "network", "inspect", name], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise VmError(
            f"Docker network {name!r} does not exist ({proc.stderr.strip()}); the VMs join it, "
            "so it must be created first"
        )
    return json.loads(proc.stdout)[0]


def bridge_name(attrs: dict) -> str:
    """Docker's Linux bridge for a user-defined bridge network."""
    if attrs.get("Driver") != "bridge":
        raise VmError(
            f"Docker network {attrs.get('Name')!r} uses the {attrs.get('Driver')!r} driver; "
            "a VM can only join a bridge network"
        )
    return attrs.get("Options", {}).get("com.docker.network.bridge.name") or (
        "br-" + attrs["Id"][:12]
    )


def check_address(name: str, address: str, attrs: dict) -> dict:
    """Refuse an address Docker could hand to a container; return the network's IPAM entry."""
    net_name = attrs.get("Name")
    ip = ipaddress.ip_address(address)
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    config = next(
        (c for c in configs if c.get("Subnet") and ip in ipaddress.ip_network(c["Subnet"])),
        None,
    )
    if config is None:
        subnets = [c.get("Subnet") for c in configs]
        raise VmError(
            f"VM {name!r}: address {address} is outside the subnets {subnets} of Docker "
            f"network {net_name!r}"
        )
    if not config.get("IPRange"):
        raise VmError(
            f"Docker network {net_name!r} has no --ip-range, so Docker may give a container "
            f"the address {address} of VM {name!r}; recreate the network with an ip_range "
            "(cluster.network.ip_range in the inventory) that leaves room for the VMs"
        )
    if ip in ipaddress.ip_network(config["IPRange"]):
        raise VmError(
            f"VM {name!r}: address {address} is inside Docker network {net_name!r}'s "
            f"--ip-range {config['IPRange']}, where Docker hands out addresses to containers; "
            "give the VM an address outside it"
        )
    for container in (attrs.get("Containers") or {}).values():
        if container.get("IPv4Address", "").split("/")[0] == address:
            raise VmError(
                f"VM {name!r}: address {address} is already used by container "
                f"{container.get('Name')!r} on network {net_name!r}"
            )
    return config


def host_nameservers(paths=("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")) -> list[str]:
    """The host's name servers that a VM can reach (a loopback stub is the host's own)."""
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        servers = [
            m
            for m in re.findall(r"^\s*nameserver\s+(\S+)", text, re.MULTILINE)
            if not ipaddress.ip_address(m.split("%")[0]).is_loopback
        ]
        if servers:
            return servers
    return []


# --- the base image ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImage:
    key: str
    disk: Path


def image_key() -> str:
    inputs = {
        "suite": image.SUITE,
        "mirror": image.MIRROR,
        "packages": packages(),
        "consul": [CONSUL_SUITE, *CONSUL_PACKAGES],
        # Salt is baked in (wheelhouse.install_runtime): emulated, pip took minutes to install
        # it during the bootstrap, and the minion's first start compiled its bytecode.
        "salt_runtime": wheelhouse.dependencies_key(),
        "disk_mib": DISK_MIB,
        "partition_start": PART_START,
        "recipe": RECIPE_VERSION,
        "node_recipe": image.RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def _cached(key: str) -> BaseImage:
    where = CACHE_DIR / key
    return BaseImage(key, where / "disk.img")


HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSHD_CONFIG = f"""\
# saltyard (saltyard/localcluster/vm.py): root by key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# One host key type: an RSA key takes seconds to make without KVM.
HostKey {HOST_KEY}
"""
KEYGEN = f'/usr/bin/ssh-keygen -q -t ed25519 -N "" -f {HOST_KEY}'
# The host key is made at first boot, so that VMs from one image do not share it. Debian's unit
# checks the configuration first, which fails without a key: the reset puts the key first.
SSH_KEYGEN_DROPIN = f"""\
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -e {HOST_KEY} || {KEYGEN}'
ExecStartPre=/usr/sbin/sshd -t
"""


# update-grub's input in the VM. GRUB_DEFAULT=saved: the kernel role chooses the kernel to boot
# with grub-set-default (grubenv), not by menu position. GRUB and the kernel talk on the serial
# port, which is the VM's console log; without GRUB_TERMINAL=serial, update-grub would send the
# menu to a screen the VM does not have. No menu wait: nobody is there to choose.
GRUB_DEFAULTS = """\
# saltyard (saltyard/localcluster/vm.py); update-grub reads this.
GRUB_DEFAULT=saved
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
"""
# For kernels installed inside the VM (written after the build's own kernel install: in the
# chroot, "dep" would look at the build machine's hardware): an initrd with only the modules
# this VM uses is a third of the size, quicker for GRUB to load through the BIOS and for the
# emulated CPU to pack. gzip: minbase has no zstd, initramfs-tools' default.
INITRAMFS_CONF = "# saltyard (saltyard/localcluster/vm.py)\nMODULES=dep\nCOMPRESS=gzip\n"
GRUB_DIR = "usr/lib/grub/i386-pc"


def _finish_vm_rootfs(root: Path, fs_uuid: str) -> None:
    image._finish_rootfs(root)
    # By UUID, as Debian's installer writes it: the same line whatever the disk is called.
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc/default/grub").write_text(GRUB_DEFAULTS)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/saltyard.conf").write_text(SSHD_CONFIG)
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "saltyard-host-keys.conf").write_text(SSH_KEYGEN_DROPIN)
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    # Written per VM; the build machine's resolver means nothing inside.
    resolv = root / "etc/resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    resolv.write_text("")
    systemctl = ["systemctl", f"--root={root}"]
    subprocess.run(
        [*systemctl, "enable", "systemd-networkd.service", "ssh.service"],
        check=True,
        capture_output=True,
    )
    # It looks for LVM snapshots, which a VM has none of, and costs seconds of a slow boot.
    subprocess.run([*systemctl, "disable", "e2scrub_reap.service"], check=True, capture_output=True)
    subprocess.run([*systemctl, "disable", *DISABLED_UNITS], check=True, capture_output=True)


def build(force: bool = False) -> BaseImage:
    """Build the VM base image (a bootable disk) unless it is cached; return it."""
    key = image_key()
    cached = _cached(key)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # A cluster bring-up and the VM tests may build at once: one builds, the other waits.
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and cached.disk.exists():
            step(f"VM image {key} is cached ({CACHE_DIR / key})")
        else:
            _build(key)
            _prune(key)
        (CACHE_DIR / key / "used").touch()
        return cached


def _build(key: str) -> None:
    """Build into a scratch directory, then rename: a cached image is always a whole one."""
    for program, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs")):
        _need(program, package)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=CACHE_DIR))
    try:
        root = work / "rootfs"
        step(f"debootstrap {image.SUITE} with a kernel and GRUB for the VMs (two or three minutes)")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages())}",
                image.SUITE,
                str(root),
                image.MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Before the rootfs is finished: apt needs the build machine's resolver.
        _install_consul(root)
        fs_uuid = str(uuid.uuid4())
        _finish_vm_rootfs(root, fs_uuid)
        wheelhouse.install_runtime(root)
        kernel = _install_grub_files(root, fs_uuid)
        core = _make_core_image(root, fs_uuid)
        boot = (root / GRUB_DIR / "boot.img").read_bytes()
        step(f"writing the VM disk image ({DISK_MIB} MiB, sparse): MBR, GRUB, ext4 at 1 MiB")
        _write_disk(work / "disk.img", root, fs_uuid, core, boot)
        shutil.rmtree(root)
        (work / "inputs.json").write_text(
            json.dumps({"packages": packages(), "kernel": kernel, "fs_uuid": fs_uuid}, indent=2)
            + "\n"
        )
        if (CACHE_DIR / key).exists():
            shutil.rmtree(CACHE_DIR / key)
        work.rename(CACHE_DIR / key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step(f"VM image {key} built in {time.monotonic() - started:.0f} s")


def _install_grub_files(root: Path, fs_uuid: str) -> str:
    """Put in the rootfs what grub-install would, and a first grub.cfg; return the kernel
    release it boots.

    The first grub.cfg is written by hand: update-grub cannot run in a chroot (grub-probe finds
    no device for /). The first kernel install in the VM runs Debian's update-grub, which
    replaces it; its entries then carry the ids grub-set-default takes. Written last: the kernel
    hook runs update-grub only once grub.cfg exists."""
    kernels = sorted(
        (p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*")),
        key=_release_key,
    )
    if not kernels:
        raise VmError(f"the VM rootfs has no kernel in {root / 'boot'}")
    release = kernels[-1]
    if not (root / "boot" / f"initrd.img-{release}").exists():
        raise VmError(f"the VM rootfs has no initrd for kernel {release} in {root / 'boot'}")
    (root / "etc/initramfs-tools/conf.d/saltyard-vm").write_text(INITRAMFS_CONF)
    # The modules GRUB's normal.mod loads at boot, from the same grub-pc-bin as core.img.
    modules = root / "boot/grub/i386-pc"
    shutil.rmtree(modules, ignore_errors=True)
    modules.mkdir(parents=True)
    for source in (root / GRUB_DIR).iterdir():
        if source.suffix in (".mod", ".lst"):
            shutil.copy(source, modules / source.name)
    subprocess.run(
        ["chroot", str(root), "grub-editenv", "/boot/grub/grubenv", "create"], check=True
    )
    (root / "boot/grub/grub.cfg").write_text(
        "# saltyard (saltyard/localcluster/vm.py): the build's grub.cfg; update-grub in the VM\n"
        "# replaces it at the first kernel install.\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial\n"
        "terminal_output serial\n"
        "set timeout=0\n"
        "insmod part_msdos\n"
        "insmod ext2\n"
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}\n"
        f"menuentry 'Debian GNU/Linux, with Linux {release}' {{\n"
        f"\tlinux /boot/vmlinuz-{release} root=UUID={fs_uuid} ro console=ttyS0\n"
        f"\tinitrd /boot/initrd.img-{release}\n"
        "}\n"
    )
    return release


def _release_key(release: str) -> tuple:
    """Order kernel releases as `sort -V` does for Debian's names (6.1.0-9 < 6.1.0-10)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release))


def _make_core_image(root: Path, fs_uuid: str) -> bytes:
    """GRUB's core.img from the rootfs's own grub-mkimage (the build machine needs no GRUB):
    it finds the root filesystem by UUID and hands over to /boot/grub (normal.mod, grub.cfg)."""
    early = root / "tmp/saltyard-early.cfg"
    early.write_text(f"search.fs_uuid {fs_uuid} root\nset prefix=($root)/boot/grub\n")
    try:
        subprocess.run(
            [
                "chroot",
                str(root),
                "grub-mkimage",
                "-O",
                "i386-pc",
                "-o",
                "/tmp/saltyard-core.img",
                "-c",
                "/tmp/saltyard-early.cfg",
                "-p",
                "/boot/grub",
                "biosdisk",
                "part_msdos",
                "ext2",
                "search_fs_uuid",
            ],
            check=True,
        )
        core = (root / "tmp/saltyard-core.img").read_bytes()
    finally:
        early.unlink(missing_ok=True)
        (root / "tmp/saltyard-core.img").unlink(missing_ok=True)
    sectors = -(-len(core) // SECTOR)
    if sectors >= PART_START - 1:
        raise VmError(f"GRUB's core.img ({sectors} sectors) does not fit before the partition")
    # Its first sector ends in a block list (start sector at 0x1f4, count at 0x1fc) that
    # grub-mkimage leaves as "the rest of core.img, from sector 2": right when core.img sits at
    # sector 1, where _write_disk puts it. Checked, so that another GRUB build cannot make an
    # image that hangs at boot with nothing in the log.
    start, count = struct.unpack_from("<QH", core, 0x1F4)
    if (start, count) != (2, sectors - 1):
        raise VmError(
            f"GRUB's core.img has block list start={start} count={count}, expected 2 and "
            f"{sectors - 1}; this GRUB build needs grub-bios-setup"
        )
    return core


def mbr_partition_table(part_start: int, part_sectors: int, disk_id: int) -> bytes:
    """Bytes 440-511 of an MBR: the disk signature and one bootable Linux partition (LBA only:
    its CHS fields say "beyond CHS", which Linux, GRUB and SeaBIOS all accept), then 0x55AA."""
    beyond_chs = b"\xfe\xff\xff"
    entry = struct.pack("<B3sB3sII", 0x80, beyond_chs, 0x83, beyond_chs, part_start, part_sectors)
    return struct.pack("<IH", disk_id, 0) + entry + bytes(48) + b"\x55\xaa"


def _write_disk(disk: Path, root: Path, fs_uuid: str, core: bytes, boot: bytes) -> None:
    """A sparse raw disk: the MBR (GRUB's boot.img and the partition table), core.img from
    sector 1, and partition 1 from PART_START holding an ext4 filesystem of root."""
    size = DISK_MIB * 1024 * 1024
    with open(disk, "wb") as f:
        f.truncate(size)
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            FS_LABEL,
            "-U",
            fs_uuid,
            "-E",
            f"offset={PART_OFFSET}",
            "-d",
            root,
            disk,
            # The filesystem's size, not the disk's.
            f"{(size - PART_OFFSET) // 1024}k",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # boot.img jumps to core.img at the sector in its kernel_sector field (8 bytes at 0x5c):
    # 1 as shipped. At 0x66 a 2-byte jump skips the code that trusts the BIOS's boot drive
    # number; grub-bios-setup overwrites it with two NOPs for a hard disk, and so do we.
    if struct.unpack_from("<Q", boot, 0x5C)[0] != 1 or boot[0x66] != 0xEB:
        raise VmError("GRUB's boot.img is not the layout this build expects (kernel_sector, jmp)")
    mbr = bytearray(boot[:440])
    mbr[0x66:0x68] = b"\x90\x90"
    part_sectors = (size - PART_OFFSET) // SECTOR
    mbr += mbr_partition_table(PART_START, part_sectors, int(fs_uuid[:8], 16))
    with open(disk, "r+b") as f:
        f.write(mbr)
        f.seek(SECTOR)
        f.write(core)


def _fs(disk: Path) -> str:
    """The root filesystem inside a VM disk, as e2fsprogs tools (debugfs, e2fsck) take it."""
    return f"{disk}?offset={PART_OFFSET}"


def _prune(key: str) -> None:
    """Remove scratch directories of interrupted builds and images nobody used for a while
    (a VM runs from its own copy). Called with the cache lock held."""
    cutoff = time.time() - KEEP_UNUSED_DAYS * 86400
    for old in CACHE_DIR.iterdir():
        if not old.is_dir() or old.name == key:
            continue
        stamp = old / "used"
        last_used = (stamp if stamp.exists() else old).stat().st_mtime
        if old.name.startswith("build-") or last_used < cutoff:
            shutil.rmtree(old, ignore_errors=True)


# --- a VM's own configuration ------------------------------------------------------------------


def guest_files(
    node: Node, inventory: Inventory, gateway: str, mac: str, public_key: str, nameservers
) -> dict[str, tuple[str, int]]:
    """What makes a copy of the base disk into this node: {path: (content, mode)}."""
    prefix = ipaddress.ip_network(inventory.network["subnet"]).prefixlen
    hosts = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "# The cluster's nodes (salt/inventory.yaml), as the containers get them.",
        *(f"{n.address}\t{n.name}" for n in inventory.nodes),
    ]
    network = (
        "# saltyard (saltyard/localcluster/vm.py): the node's inventory address.\n"
        "[Match]\n"
        f"MACAddress={mac}\n\n"
        "[Network]\n"
        f"Address={node.address}/{prefix}\n"
        f"Gateway={gateway}\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n"
    )
    return {
        "/etc/hostname": (f"{node.name}\n", 0o644),
        "/etc/hosts": ("\n".join(hosts) + "\n", 0o644),
        "/etc/systemd/network/10-saltyard.network": (network, 0o644),
        "/etc/resolv.conf": ("".join(f"nameserver {s}\n" for s in nameservers), 0o644),
        "/root/.ssh/authorized_keys": (public_key.strip() + "\n", 0o600),
    }


def _read_guest_file(disk: Path, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", _fs(disk)], capture_output=True, text=True, check=False
    ).stdout


def write_guest_files(disk: Path, files: dict[str, tuple[str, int]]) -> None:
    """Write files into the root filesystem of a VM disk that no VM runs from, and read them
    back. Files that already hold their content are left alone."""
    stale = {path: v for path, v in files.items() if _read_guest_file(disk, path) != v[0]}
    if not stale:
        return
    # A VM that was killed leaves its journal unreplayed: debugfs writes beside it, and the
    # replay at the next mount could undo the write. Replay it first, as a boot's fsck does.
    check = subprocess.run(["e2fsck", "-p", _fs(disk)], capture_output=True, text=True, check=False)
    if check.returncode >= 4:
        raise VmError(
            f"e2fsck -p {_fs(disk)} exited {check.returncode}: "
            f"{(check.stdout + check.stderr).strip()}"
        )
    with tempfile.TemporaryDirectory(prefix="saltyard-vmfiles-") as tmp:
        script = []
        for index, (path, (content, mode)) in enumerate(sorted(stale.items())):
            staged = Path(tmp) / str(index)
            staged.write_text(content)
            # debugfs gives the new inode the staged file's mode and owner.
            staged.chmod(mode)
            script += [f"rm {path}", f"write {staged} {path}"]
        (Path(tmp) / "script").write_text("\n".join(script) + "\n")
        subprocess.run(
            ["debugfs", "-w", "-f", str(Path(tmp) / "script"), _fs(disk)],
            check=True,
            capture_output=True,
        )
    # debugfs reports failures on stderr but exits 0; reading back is the real check.
    for path, (content, _mode) in stale.items():
        if _read_guest_file(disk, path) != content:
            raise VmError(f"could not write {path} into {disk} with debugfs")


# --- running VMs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmStatus:
    name: str
    running: bool
    pid: int | None
    address: str | None
    tap: str | None
    disk: Path
    log: Path


def _read_meta(files: VmFiles) -> dict:
    try:
        return json.loads(files.meta.read_text())
    except (OSError, ValueError):
        return {}


def _pid(files: VmFiles) -> int | None:
    """The QEMU process of this VM, if it runs (a reused pid or a zombie is not it)."""
    try:
        pid = int(files.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if (
        cmdline
        and Path(os.fsdecode(cmdline[0])).name == QEMU
        and any(str(files.disk).encode() in arg for arg in cmdline)
    ):
        return pid
    return None


def status(name: str, state_dir: Path = STATE_DIR) -> VmStatus:
    files = VmFiles.of(name, state_dir)
    meta = _read_meta(files)
    pid = _pid(files)
    return VmStatus(
        name, pid is not None, pid, meta.get("address"), meta.get("tap"), files.disk, files.log
    )


def recorded(state_dir: Path = STATE_DIR) -> list[str]:
    """The VMs this state dir has started (running or not)."""
    return sorted(p.stem for p in (Path(state_dir) / "vm").glob("*.json"))


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VmError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


def _make_tap(tap: str, bridge: str) -> None:
    if _link_exists(tap):
        # A tap with a carrier is held open by a process: another VM of the same name. (A link
        # that is down has no readable carrier, and nobody on it.)
        try:
            carrier = Path(f"/sys/class/net/{tap}/carrier").read_text().strip()
        except OSError:
            carrier = "0"
        if carrier == "1":
            raise VmError(f"tap device {tap} is in use by another process (a VM of that name?)")
        _ip("link", "del", tap)
    if not _link_exists(bridge):
        raise VmError(f"the Docker network's bridge {bridge} does not exist on this host")
    _ip("tuntap", "add", "dev", tap, "mode", "tap")
    _ip("link", "set", tap, "master", bridge)
    _ip("link", "set", tap, "up")


def _remove_tap(tap: str | None) -> None:
    if tap and _link_exists(tap):
        _ip("link", "del", tap)


def qemu_command(
    name: str, files: VmFiles, tap: str, mac: str, memory_mb: int = MEMORY_MB
) -> list[str]:
    return [
        QEMU,
        "-name",
        f"saltyard-{name}",
        "-accel",
        "tcg",
        "-m",
        str(memory_mb),
        "-smp",
        str(CPUS),
        "-nodefaults",
        "-display",
        "none",
        # No -kernel: SeaBIOS boots the disk's MBR, GRUB the kernel of the saved default.
        "-drive",
        f"file={files.disk},format=raw,if=virtio",
        "-netdev",
        f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac}",
        # Entropy for the guest's first-boot host keys, which would otherwise wait for it.
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{files.log}",
        "-qmp",
        f"unix:{files.qmp},server=on,wait=off",
        "-pidfile",
        str(files.pidfile),
        "-daemonize",
    ]


def memory_for(node: Node) -> int:
    """The VM's memory: more for a mesos agent, which runs Docker and its tasks."""
    return AGENT_MEMORY_MB if node.has_role("mesos-agent") else MEMORY_MB


def start(
    node: Node, inventory: Inventory, state_dir: Path = STATE_DIR, memory_mb: int | None = None
) -> VmStatus:
    """Boot node's VM on the inventory's Docker network; a running VM is left alone."""
    memory_mb = memory_mb or memory_for(node)
    files = VmFiles.of(node.name, state_dir)
    current = status(node.name, state_dir)
    if current.running:
        step(f"VM {node.name} is running (pid {current.pid})")
        return current
    check_host()
    attrs = network_attrs(inventory.network["name"])
    bridge = bridge_name(attrs)
    config = check_address(node.name, node.address, attrs)
    gateway = config.get("Gateway") or inventory.network.get("gateway")
    if not gateway:
        raise VmError(f"Docker network {attrs.get('Name')!r} has no gateway for VM {node.name!r}")
    base = build()
    key = ensure_ssh_key(state_dir)
    tap = tap_name(inventory.name, node.name)
    mac = mac_address(inventory.name, node.name)
    files.disk.parent.mkdir(parents=True, exist_ok=True)

    meta = _read_meta(files)
    if not files.disk.exists() or meta.get("image") != base.key:
        step(f"VM {node.name}: disk {files.disk} from image {base.key}")
        subprocess.run(["cp", "--sparse=always", str(base.disk), str(files.disk)], check=True)
    nameservers = host_nameservers()
    if not nameservers:
        step(f"VM {node.name}: the host has no name server a VM can reach; no DNS inside")
    write_guest_files(
        files.disk,
        guest_files(
            node, inventory, gateway, mac, key.with_suffix(".pub").read_text(), nameservers
        ),
    )
    # Recorded before the tap exists, so that stop() and `down` find what to remove.
    files.meta.write_text(
        json.dumps(
            {
                "name": node.name,
                "cluster": inventory.name,
                "network": attrs.get("Name"),
                "address": node.address,
                "tap": tap,
                "bridge": bridge,
                "mac": mac,
                "image": base.key,
            },
            indent=2,
        )
        + "\n"
    )
    _make_tap(tap, bridge)
    files.pidfile.unlink(missing_ok=True)
    step(
        f"booting VM {node.name} ({node.address}, {memory_mb} MB, QEMU without KVM; "
        f"console log {files.log})"
    )
    proc = subprocess.run(
        ["nice", "-n", str(NICENESS), *qemu_command(node.name, files, tap, mac, memory_mb)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        _remove_tap(tap)
        raise VmError(f"QEMU could not start VM {node.name}: {proc.stderr.strip()}")
    return status(node.name, state_dir)


def _log_tail(files: VmFiles, lines: int = 15) -> str:
    try:
        text = files.log.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def ssh(
    name: str,
    cmd: list[str],
    state_dir: Path = STATE_DIR,
    timeout: float | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess:
    """Run cmd in the VM as root; stdout and stderr together, as `docker exec` gives them.
    ``input_text`` is its standard input (none by default)."""
    address = _read_meta(VmFiles.of(name, state_dir)).get("address")
    if not address:
        raise VmError(f"VM {name!r} was never started from {state_dir}")
    return subprocess.run(
        ssh_command(address, ssh_key_path(state_dir), cmd),
        **({"input": input_text} if input_text is not None else {"stdin": subprocess.DEVNULL}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


def wait_ssh(name: str, state_dir: Path = STATE_DIR, timeout: float = 300) -> float:
    """Wait until the VM's sshd lets root in; return the seconds it took."""
    files = VmFiles.of(name, state_dir)
    started = time.monotonic()
    deadline = started + timeout
    step(f"waiting for VM {name} to boot and answer SSH (about half a minute without KVM)")
    last_report = started
    result = None
    while time.monotonic() < deadline:
        if not status(name, state_dir).running:
            raise VmError(f"VM {name} stopped while booting; its console:\n{_log_tail(files)}")
        try:
            result = ssh(name, ["true"], state_dir, timeout=30)
            if result.returncode == 0:
                seconds = time.monotonic() - started
                step(f"VM {name} answers SSH after {seconds:.0f} s")
                return seconds
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            step(f"VM {name}: still booting ({last_report - started:.0f} s)")
        time.sleep(2)
    detail = result.stdout.strip() if result is not None else "no answer"
    raise VmError(
        f"VM {name} did not answer SSH within {timeout:.0f} s ({detail}); its console:\n"
        f"{_log_tail(files)}"
    )


def boot_id(name: str, state_dir: Path = STATE_DIR, timeout: float = 60) -> str:
    """The kernel's id of the VM's current boot: a new one at every boot."""
    proc = ssh(name, ["cat", "/proc/sys/kernel/random/boot_id"], state_dir, timeout=timeout)
    if proc.returncode != 0:
        raise VmError(f"VM {name}: cannot read its boot id: {proc.stdout.strip()}")
    return proc.stdout.strip()


def wait_reboot(
    name: str, previous_boot: str, state_dir: Path = STATE_DIR, timeout: float = 600
) -> float:
    """Wait until the VM answers SSH from a boot other than previous_boot; return the seconds
    it took. A VM that does not come back in time is reported with its console, not guessed
    at."""
    files = VmFiles.of(name, state_dir)
    started = time.monotonic()
    deadline = started + timeout
    last_report = started
    while time.monotonic() < deadline:
        if not status(name, state_dir).running:
            raise VmError(f"VM {name} stopped while rebooting; its console:\n{_log_tail(files)}")
        try:
            proc = ssh(name, ["cat", "/proc/sys/kernel/random/boot_id"], state_dir, timeout=30)
            if proc.returncode == 0 and proc.stdout.strip() not in ("", previous_boot):
                seconds = time.monotonic() - started
                step(f"VM {name} is back after {seconds:.0f} s")
                return seconds
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            step(f"VM {name}: still rebooting ({last_report - started:.0f} s)")
        time.sleep(2)
    raise VmError(
        f"VM {name} did not come back within {timeout:.0f} s of its reboot; its console:\n"
        f"{_log_tail(files)}"
    )


def reboot(name: str, state_dir: Path = STATE_DIR, timeout: float = 600) -> float:
    """Reboot the VM from inside (the guest's own `systemctl reboot`, so through the BIOS and
    GRUB again) and wait until it answers from the new boot; return the seconds it took."""
    before = boot_id(name, state_dir)
    step(f"rebooting VM {name}")
    # The connection may drop before ssh sees the command's status: the wait is the check.
    try:
        ssh(name, ["systemctl", "reboot"], state_dir, timeout=60)
    except subprocess.TimeoutExpired:
        pass
    return wait_reboot(name, before, state_dir, timeout)


def _qmp(path: Path, command: str) -> None:
    """Send one QMP command (QEMU's JSON monitor)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        stream = sock.makefile("rw")
        stream.readline()  # the greeting
        for execute in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": execute}) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    break


def _wait_gone(name: str, state_dir: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not status(name, state_dir).running:
            return True
        time.sleep(0.5)
    return False


def stop(name: str, state_dir: Path = STATE_DIR, timeout: float = 60) -> None:
    """Power the VM off (ACPI, so the guest shuts down cleanly), kill it if it does not go in
    `timeout` seconds, and remove its tap device. Its disk stays."""
    files = VmFiles.of(name, state_dir)
    current = status(name, state_dir)
    if current.running:
        step(f"stopping VM {name}")
        try:
            _qmp(files.qmp, "system_powerdown")
            clean = _wait_gone(name, state_dir, timeout)
        except (OSError, ValueError):
            clean = False
        if not clean:
            step(f"VM {name} did not power off in {timeout:.0f} s; killing it")
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                pid = status(name, state_dir).pid
                if pid is None:
                    break
                os.kill(pid, sig)
                if _wait_gone(name, state_dir, grace):
                    break
            if status(name, state_dir).running:
                raise VmError(f"VM {name} (pid {current.pid}) would not stop")
    _remove_tap(current.tap)
    files.pidfile.unlink(missing_ok=True)
    files.qmp.unlink(missing_ok=True)


def destroy(name: str, state_dir: Path = STATE_DIR) -> None:
    """Stop the VM and remove its disk and files (the cached base image stays)."""
    stop(name, state_dir)
    files = VmFiles.of(name, state_dir)
    for path in (files.disk, files.log, files.meta):
        path.unlink(missing_ok=True)
