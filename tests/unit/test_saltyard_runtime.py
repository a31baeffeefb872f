"""saltyard_runtime.code_digest: what the daemons' service states watch, so that a new saltyard
wheel restarts them (states/discovery, states/marathon/emulator.sls). Run against real
interpreters and a real package on disk."""

from __future__ import annotations

import sys

import pytest
from salt.exceptions import CommandExecutionError

from tests.support.salt_loader import load_module


@pytest.fixture
def runtime():
    return load_module("_modules", "saltyard_runtime")


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "site" / "demo_pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("VERSION = '1'\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "core.py").write_text("def f():\n    return 1\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    return root


def test_the_digest_follows_the_code_not_the_bytecode(runtime, package):
    first = runtime.code_digest(sys.executable, "demo_pkg")
    assert len(first) == 64 and first == runtime.code_digest(sys.executable, "demo_pkg")

    (package / "sub" / "__pycache__").mkdir()
    (package / "sub" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0bytecode")
    assert runtime.code_digest(sys.executable, "demo_pkg") == first

    # Same version string, other code: another digest.
    (package / "sub" / "core.py").write_text("def f():\n    return 2\n")
    changed = runtime.code_digest(sys.executable, "demo_pkg")
    assert changed != first

    # A file moved, contents unchanged: another digest too.
    (package / "sub" / "core.py").rename(package / "core.py")
    assert runtime.code_digest(sys.executable, "demo_pkg") not in (first, changed)


def test_saltyard_itself_has_a_digest(runtime):
    assert len(runtime.code_digest(sys.executable)) == 64


def test_a_missing_package_or_interpreter_is_named(runtime, tmp_path):
    with pytest.raises(CommandExecutionError, match="cannot import 'no_such_pkg'"):
        runtime.code_digest(sys.executable, "no_such_pkg")
    missing = str(tmp_path / "venv" / "bin" / "python")
    with pytest.raises(CommandExecutionError, match=f"cannot run {missing}"):
        runtime.code_digest(missing)
