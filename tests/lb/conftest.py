"""Fixtures for the lb role's host-level tests: one stack of real parts per module (see
lbstack.py): the Marathon-API emulator with tasks as containers, the bridge, Consul 1.8 with
ACLs, the consul-template binary built by scripts/build-consul-template.sh, and nginx on a
loopback port, running the files that states/lb ships."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("consul")
pytest.importorskip("docker")


def _load_lbstack():
    name = "saltyard_lbtest_lbstack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("lbstack.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lbstack = _load_lbstack()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator:
    for tool in ("nginx", "consul", "logger", "flock"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            pytest.skip(f"no {tool}: run scripts/host-setup.sh")
    if not lbstack.CONSUL_TEMPLATE.exists():
        pytest.skip(f"{lbstack.CONSUL_TEMPLATE} missing: run scripts/build-consul-template.sh")
    try:
        subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no Docker engine: {exc}")
    with lbstack.LbStack(tmp_path_factory.mktemp("lb")) as running:
        yield running
        print(running.logs())


@pytest.fixture
def apps(stack) -> Iterator[Callable[..., dict]]:
    """Create apps; each is deleted (force) when the test ends."""
    created: list[str] = []

    def create(app_id: str, instances: int = 1, **extra) -> dict:
        app = lbstack.backend_app(app_id, instances, **extra)
        created.append(app_id)
        stack.marathon.update_app(app_id, app, force=True)
        return app

    yield create
    for app_id in created:
        try:
            stack.marathon.delete_app(app_id, force=True)
        except Exception:  # already gone: the stack's teardown removes containers anyway
            pass
