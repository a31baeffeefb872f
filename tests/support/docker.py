"""The host's Docker engine for the suites that run containers: one client, one task image, and
the removal of every container this session's emulators started (by their cluster label)."""

from __future__ import annotations

import uuid

import docker

from tests.support.components import require

# The prefix of every emulator cluster name (and so container label) started in this process,
# so the session's cleanup removes exactly its own containers, also those of a failed test.
SESSION = f"pytest-{uuid.uuid4().hex[:8]}"
EMULATOR_LABEL = "saltyard.marathon-emulator"
# A tag of the local cluster's node image (Debian 12 + python3) for tasks; one per session, so
# two sessions on one machine (or one ending) never take the other's image away.
TASK_IMAGE = f"saltyard-test/task:{SESSION}"


def client() -> docker.DockerClient:
    """A client of the host's engine, which answers; else the test stops (``require``)."""
    try:
        engine = docker.from_env()
        engine.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means no usable engine
        require("Docker engine", f"no Docker engine answers ({exc}); run scripts/host-setup.sh")
    return engine


def tag_task_image(engine: docker.DockerClient, tag: str = TASK_IMAGE) -> bool:
    """Tag the node image (built once, cached by a hash of its inputs) as ``tag``; True when
    the tag was made here (so the caller removes it again)."""
    from saltyard.localcluster import image

    try:
        engine.images.get(tag)
        return False
    except docker.errors.ImageNotFound:
        engine.images.get(image.build()).tag(tag)
        return True


def remove_task_image(engine: docker.DockerClient, tag: str = TASK_IMAGE) -> None:
    engine.images.remove(tag, noprune=True)


def remove_containers(engine: docker.DockerClient, cluster_prefix: str) -> int:
    """Remove every emulator container whose cluster label starts with ``cluster_prefix``."""
    removed = 0
    for c in engine.containers.list(
        all=True, sparse=True, filters={"label": f"{EMULATOR_LABEL}.cluster"}
    ):
        if (
            (c.attrs.get("Labels") or {})
            .get(f"{EMULATOR_LABEL}.cluster", "")
            .startswith(cluster_prefix)
        ):
            c.remove(force=True)
            removed += 1
    return removed


def remove_cluster(engine: docker.DockerClient, cluster: str) -> None:
    """Remove the containers of one emulator cluster (exact name)."""
    for c in engine.containers.list(
        all=True, filters={"label": f"{EMULATOR_LABEL}.cluster={cluster}"}
    ):
        c.remove(force=True)
