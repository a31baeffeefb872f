"""Missing real components: skipped on a developer's machine, a failure under ``CI=true``.

A suite that cannot find a real component it needs (a Docker engine, Consul, nginx,
consul-template, QEMU, /dev/net/tun, root, a loop mount, ...) calls ``require`` (or one of the
probes below) instead of ``pytest.skip``: on a developer's machine the test is skipped with the
reason, and under CI (``CI=true``) it fails, naming what is missing, so a CI run can never pass by
quietly running nothing. Skips that are not about a missing component (a profile that lacks a
node, a reused cluster) stay ``pytest.skip``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

# Every missing-component skip starts with this, so a run's summary shows them together.
PREFIX = "missing component"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(component: str, reason: str) -> NoReturn:
    """Stop the test for a missing ``component``: skip, or under CI=true fail (named)."""
    message = f"{PREFIX} {component}: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(message)


def require_program(program: str, package: str, hint: str = "run scripts/host-setup.sh") -> str:
    """The path of ``program`` (also found in /usr/sbin and /sbin, which a non-root PATH lacks)."""
    found = shutil.which(program) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d, program)).exists()), None
    )
    if not found:
        require(program, f"{program} is not installed ({package}); {hint}")
    return found


def require_file(path: Path | str, component: str, hint: str) -> Path:
    path = Path(path)
    if not path.exists():
        require(component, f"{path} is missing; {hint}")
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        require("root", f"needs root: {why}")


def require_docker_engine() -> None:
    """A Docker engine that answers (``docker info``)."""
    require_program("docker", "docker.io")
    try:
        subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        require("Docker engine", f"no Docker engine answers ({exc}); run scripts/host-setup.sh")
