"""Fixtures for the lb role's host-level tests: one stack of real parts per module (see
lbstack.py): the Marathon-API emulator with tasks as containers, the bridge, Consul 1.8 with
ACLs, the consul-template binary built by scripts/build-consul-template.sh, and nginx on a
loopback port, running the files that states/lb ships."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.lb import lbstack
from tests.support.components import require_docker_engine, require_file, require_program


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator:
    for tool, package in (
        ("nginx", "nginx"),
        ("consul", "consul from Debian bullseye"),
        ("logger", "bsdutils"),
        ("flock", "util-linux"),
    ):
        require_program(tool, package)
    require_file(lbstack.CONSUL_TEMPLATE, "consul-template", "run scripts/build-consul-template.sh")
    require_docker_engine()
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
