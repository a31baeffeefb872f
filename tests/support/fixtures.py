"""pytest fixtures over tests/support, loaded for every suite by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import docker as support_docker


@pytest.fixture(scope="session")
def docker_client():
    """The host's Docker engine (skips, or fails under CI=true, without one). At the end of
    the session every container of this session's emulators is removed."""
    engine = support_docker.client()
    yield engine
    support_docker.remove_containers(engine, support_docker.SESSION)


@pytest.fixture(scope="session")
def task_image(docker_client) -> Iterator[str]:
    """The node image (Debian 12 + python3) tagged for tasks, untagged again at the end."""
    created = support_docker.tag_task_image(docker_client)
    yield support_docker.TASK_IMAGE
    if created:
        support_docker.remove_task_image(docker_client)
