"""Fixtures for unit-testing the custom Salt modules without a Salt loader
(tests/support/salt_loader.py sets the dunders Salt's loader would)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.salt_loader import load_module

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def load() -> Callable[..., ModuleType]:
    """tests/support/salt_loader.load_module: a module or state with Salt's dunders set."""
    return load_module


def run_all(cmd: list[str], python_shell: bool = False, **_: Any) -> dict[str, Any]:
    """A real, subprocess-backed stand-in for Salt's ``cmd.run_all`` (list argv, no shell)."""
    # The modules must never build shell command lines from (pillar-supplied) paths.
    assert python_shell is False and isinstance(cmd, list), cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # cmd.run_all strips trailing whitespace from stdout/stderr by default.
    return {
        "pid": 0,
        "retcode": proc.returncode,
        "stdout": proc.stdout.rstrip(),
        "stderr": proc.stderr.rstrip(),
    }


@pytest.fixture
def real_run_all() -> Callable[..., dict[str, Any]]:
    return run_all


@pytest.fixture
def data() -> Callable[[str], str]:
    """Read a captured command output from tests/unit/data."""
    return lambda name: (DATA / name).read_text()


# What the master gives a registry node besides the inventory (pki, generated secrets).
REGISTRY_PILLAR = {
    "pki": {"node": {"cert": "CERT", "key": "KEY"}},
    "registry": {"http_secret": "not-a-secret", "users": {"pull": "not-a-password"}},
}


@pytest.fixture(scope="module")
def registry1(tmp_path_factory):
    """Salt's render of states for registry1 of the shipped inventory (tests/state_render.py)."""
    from tests.state_render import StateRenderer

    return StateRenderer(
        tmp_path_factory.mktemp("render-registry1"), "registry1", pillar=REGISTRY_PILLAR
    )
