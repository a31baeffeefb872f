"""
Fixtures for unit-testing the custom Salt modules without a Salt loader.

Salt's loader injects dunders (``__salt__``, ``__opts__``, ``__grains__``) into each module it
loads. ``load`` does the same by hand: it imports the file by path and sets the dunders as
module attributes, which is where the module's functions look them up at call time.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"

# A fresh module object per load, so dunders injected by one test never leak into another.
_serial = itertools.count()


@pytest.fixture
def load() -> Callable[..., ModuleType]:
    def _load(
        kind: str,
        name: str,
        *,
        salt: dict[str, Callable[..., Any]] | None = None,
        test: bool = False,
        grains: dict[str, Any] | None = None,
    ) -> ModuleType:
        assert kind in ("_modules", "_states"), kind
        path = REPO / kind / f"{name}.py"
        spec = importlib.util.spec_from_file_location(
            f"saltyard_unit_{kind.strip('_')}_{name}_{next(_serial)}", path
        )
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.__salt__ = salt if salt is not None else {}
        module.__opts__ = {"test": test}
        module.__grains__ = grains if grains is not None else {}
        return module

    return _load


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
