"""The local cluster's node image: a bare Debian 12 host with systemd as PID 1.

Built from debootstrap (no registry can be reached) and imported into the local Docker engine as
``saltyard/node:<hash>``, where the hash covers every input of the build, so a second
``make up`` finds the image and does not rebuild it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from saltyard.bootstrap import wheelhouse
from saltyard.localcluster.progress import step

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# What a minimal Debian cloud host has: systemd, Python (pyinfra and Salt need it; python3-apt
# lets Salt's pkgrepo manage apt sources) and the basic tools.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-apt",
    "iproute2",
    "procps",
    "ca-certificates",
    "less",
)
REPOSITORY = "saltyard/node"
# A cluster bring-up and a test suite may ask for the image at once: one builds, the other waits.
LOCK = Path("/var/cache/saltyard/node-image.lock")
# Bump when the build steps below change in a way the inputs do not show.
RECIPE_VERSION = 5


def image_tag() -> str:
    inputs = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": PACKAGES,
        # Salt is baked in (wheelhouse.install_runtime): ten nodes installing it at once took
        # minutes of every cluster bring-up.
        "salt_runtime": wheelhouse.dependencies_key(),
        "recipe": RECIPE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"{REPOSITORY}:{digest[:12]}"


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )


def _finish_rootfs(root: Path) -> None:
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    )
    # No description translations in apt's lists, as the base role sets on every node
    # (base:apt:languages): set here too so that the bootstrap's first refresh does not fetch
    # them, and the base role's refresh, the first highstate's, finds the lists as they are
    # instead of rebuilding apt's cache on ten nodes at once (measured: 90-111 s against 33-41 s
    # for the base packages).
    (root / "etc/apt/apt.conf.d/50saltyard-image-languages").write_text(
        'Acquire::Languages "none";\n'
    )
    # Each node gets its own machine id at first boot.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    # A container has no consoles to log in on, and no hardware clock to adjust.
    for unit in ("getty@tty1.service", "serial-getty@ttyS0.service"):
        link = root / "etc/systemd/system/getty.target.wants" / unit
        if link.is_symlink():
            link.unlink()
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for lists in (root / "var/lib/apt/lists").glob("*_dists_*"):
        lists.unlink()


def build(force: bool = False) -> str:
    """Build the node image unless an image with the same inputs exists; return its tag."""
    tag = image_tag()
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and image_exists(tag):
            step(f"node image {tag} is cached")
            return tag
        _build(tag)
    return tag


def _build(tag: str) -> None:
    with tempfile.TemporaryDirectory(prefix="saltyard-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        started = time.monotonic()
        step(f"debootstrap {SUITE} into {root} (about a minute)")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        _finish_rootfs(root)
        wheelhouse.install_runtime(root)
        step(f"importing the rootfs as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/sbin/init"]', "-", tag],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the node rootfs failed")
        step(f"node image {tag} built in {time.monotonic() - started:.0f} s")
