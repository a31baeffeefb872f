"""The wheelhouse: Salt, saltyard and their dependencies as wheels, built on the operator's
machine and installed on nodes offline (nodes cannot verify HTTPS to the package index).

Two parts, because they change at different rates:
- the dependencies (Salt and saltyard's runtime requirements, exactly as pinned), built once per
  machine and set of pins into ``/var/cache/saltyard/wheels/<key>/``. The local cluster's node
  and VM images carry them already installed (``install_runtime``), so a node's bootstrap does
  not install Salt under emulation or ten times over;
- the saltyard wheel, rebuilt from the checkout whenever its sources change.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from saltyard.localcluster.progress import step

ROOT = Path(__file__).resolve().parent.parent.parent
SALT_REQUIREMENT = "salt==3008.4"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
# Per machine, like the images: every checkout (and CI clone) shares it.
CACHE_DIR = Path(os.environ.get("SALTYARD_WHEEL_CACHE") or "/var/cache/saltyard/wheels")
# Where Salt lives on every node (the deploy, the minion unit and the images agree on it).
VENV = "/opt/saltyard/venv"
# The dependencies key of what is installed in VENV (written by install_runtime and by the
# deploy), and its copy in the wheelhouse tarball: when they match, the deploy installs only
# the saltyard wheel. Emulated, pip's resolution of the ninety requirements it found installed
# took most of each VM's bootstrap.
DEPENDENCIES_MARKER = f"{VENV}/saltyard-dependencies.key"
WHEELHOUSE_KEY = "dependencies.key"


def requirements() -> list[str]:
    """What a node's venv needs besides saltyard itself: Salt and saltyard's runtime pins."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [SALT_REQUIREMENT, *project["dependencies"]]


def dependencies_key() -> str:
    """Names one set of dependency wheels: the requirements and the frozen constraints.

    Pure (builds nothing), so image keys can include it cheaply."""
    text = "\n".join(requirements()) + "\0" + CONSTRAINTS.read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dependencies() -> Path:
    """The folder of dependency wheels for the current pins, built unless cached."""
    key = dependencies_key()
    where = CACHE_DIR / key
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # A cluster bring-up and a test may ask at once: one builds, the other waits.
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if where.is_dir():
            return where
        step(f"building wheels for {SALT_REQUIREMENT} and saltyard's dependencies (a minute)")
        work = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=CACHE_DIR))
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "-q",
                    "-w",
                    str(work),
                    "-c",
                    str(CONSTRAINTS),
                    *requirements(),
                ],
                check=True,
                cwd=work,
            )
            # Renamed when whole: a cached folder is never a half-built one.
            work.rename(where)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return where


def install_runtime(root: Path) -> None:
    """Install Salt and saltyard's dependencies into the venv of the rootfs at `root`.

    Runs at the host's speed in a chroot while an image is built; the bootstrap then finds them
    installed and adds only the saltyard wheel."""
    wheels = dependencies()
    inside = "/tmp/saltyard-wheels"
    # The image's own environment, not this process's (PIP_* settings name host paths).
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    shutil.copytree(wheels, root / inside.lstrip("/"))
    try:
        step(f"installing {SALT_REQUIREMENT} into the image's {VENV}")
        # --system-site-packages: Salt's apt modules use Debian's python3-apt.
        subprocess.run(
            ["chroot", str(root), "python3", "-m", "venv", "--system-site-packages", VENV],
            check=True,
            env=env,
        )
        subprocess.run(
            [
                "chroot",
                str(root),
                f"{VENV}/bin/pip",
                "install",
                "-q",
                "--no-cache-dir",
                "--no-index",
                "--find-links",
                inside,
                *requirements(),
            ],
            check=True,
            env=env,
        )
        (root / DEPENDENCIES_MARKER.lstrip("/")).write_text(dependencies_key() + "\n")
    finally:
        shutil.rmtree(root / inside.lstrip("/"), ignore_errors=True)


def build(dest: Path) -> Path:
    """Build (or refresh) the wheelhouse in `dest` and pack it; return the tarball's path.

    The dependency wheels come from the machine's cache (``dependencies``); the saltyard wheel
    is rebuilt from this checkout when its sources change.
    """
    deps = dependencies()
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    # Rebuilt only when the package's sources change: an unchanged wheelhouse gives an
    # identical tarball, and the deploy then skips the reinstall and the minion restart.
    sources = source_digest()
    marker = wheels / "saltyard.sources"
    if (
        not marker.exists()
        or marker.read_text() != sources
        or not any(wheels.glob("saltyard-*.whl"))
    ):
        for old in wheels.glob("saltyard-*.whl"):
            old.unlink()
        step("building the saltyard wheel")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
            check=True,
            cwd=dest,
        )
        shutil.rmtree(ROOT / "build", ignore_errors=True)
        marker.write_text(sources)
    tarball = dest / "wheelhouse.tar"
    key = (dependencies_key() + "\n").encode()
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo(WHEELHOUSE_KEY)
        info.size, info.mode = len(key), 0o644
        tar.addfile(info, io.BytesIO(key))
        for wheel in sorted([*deps.glob("*.whl"), *wheels.glob("saltyard-*.whl")]):
            # Fixed metadata so that an unchanged wheelhouse gives an identical tarball, and
            # the deploy skips the reinstall.
            info = tar.gettarinfo(str(wheel), arcname=f"wheels/{wheel.name}")
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with wheel.open("rb") as handle:
                tar.addfile(info, handle)
    return tarball


def source_digest() -> str:
    """Checksum of everything the saltyard wheel is built from."""
    sha = hashlib.sha256()
    files = [ROOT / "pyproject.toml", *sorted((ROOT / "saltyard").rglob("*.py"))]
    for path in files:
        sha.update(str(path.relative_to(ROOT)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()
