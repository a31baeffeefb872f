"""The wheelhouse: Salt, saltyard and their dependencies as wheels, built on the operator's
machine and installed on nodes offline (nodes cannot verify HTTPS to the package index)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from saltyard.localcluster.progress import step

ROOT = Path(__file__).resolve().parent.parent.parent
SALT_REQUIREMENT = "salt==3008.4"


def build(dest: Path) -> Path:
    """Build (or refresh) the wheelhouse in `dest` and pack it; return the tarball's path.

    Third-party wheels are kept between runs (Salt ships only as an sdist, and building it takes
    most of a minute); the saltyard wheel is rebuilt every time from this checkout.
    """
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    constraints = ROOT / "requirements" / "constraints.txt"
    # Salt and every runtime dependency of saltyard, rebuilt when the pins change.
    pins = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + constraints.read_bytes()
    ).hexdigest()
    pins_marker = wheels / "dependencies.sources"
    if not pins_marker.exists() or pins_marker.read_text() != pins:
        step(f"building wheels for {SALT_REQUIREMENT} and saltyard's dependencies (a minute)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "-w",
                str(wheels),
                "-c",
                str(constraints),
                SALT_REQUIREMENT,
                str(ROOT),
            ],
            check=True,
            cwd=dest,
        )
        shutil.rmtree(ROOT / "build", ignore_errors=True)
        pins_marker.write_text(pins)
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
    with tarfile.open(tarball, "w") as tar:
        for wheel in sorted(wheels.glob("*.whl")):
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
