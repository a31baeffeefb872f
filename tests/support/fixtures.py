"""pytest fixtures over tests/support, loaded for every suite by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import docker as support_docker


@pytest.fixture(scope="session")
def docker_client():
    """The host's Docker engine (skips, or fails under CI=true, without one). At the end of
    the session every container of this session's emulators is removed, and every test
    network it left."""
    engine = support_docker.client()
    yield engine
    support_docker.remove_containers(engine, support_docker.SESSION)
    support_docker.remove_networks(engine, support_docker.SESSION)


@pytest.fixture(scope="session")
def task_image(docker_client) -> Iterator[str]:
    """The node image (Debian 12 + python3) tagged for tasks, untagged again at the end."""
    created = support_docker.tag_task_image(docker_client)
    yield support_docker.TASK_IMAGE
    if created:
        support_docker.remove_task_image(docker_client)


@pytest.fixture
def user_network(docker_client):
    """(network, subnet): a user-defined Docker bridge network of the test's own, on a /24
    that nothing on this machine uses; removed when the test ends."""
    with support_docker.user_network(docker_client) as found:
        yield found
