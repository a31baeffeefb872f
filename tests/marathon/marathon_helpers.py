"""Shared helpers for the Marathon emulator tests (a unique module name: tests/ has no packages).
The task image, the container label and ``wait_until`` are tests/support's, re-exported here."""

from __future__ import annotations

from tests.support.docker import EMULATOR_LABEL as LABEL
from tests.support.docker import TASK_IMAGE
from tests.support.wait import wait_until

__all__ = ["LABEL", "TASK_IMAGE", "wait_until", "docker_app", "containers_of"]


def docker_app(app_id: str, **extra) -> dict:
    """A small Docker (BRIDGE) app serving HTTP on a dynamic host port; ``extra`` adds fields."""
    body = {
        "id": app_id,
        "cmd": "exec python3 -m http.server $PORT0",
        "cpus": 0.1,
        "mem": 64,
        "container": {
            "type": "DOCKER",
            "docker": {"image": TASK_IMAGE, "network": "BRIDGE"},
            "portMappings": [{"containerPort": 0, "hostPort": 0}],
        },
    }
    body.update(extra)
    return body


def containers_of(docker_client, cluster: str, app_id: str | None = None):
    labels = [f"{LABEL}.cluster={cluster}"]
    if app_id:
        labels.append(f"{LABEL}.app-id={app_id}")
    # sparse: no per-container inspect, so no race with containers being removed meanwhile
    return docker_client.containers.list(all=True, sparse=True, filters={"label": labels})


def labels_of(container) -> dict[str, str]:
    return container.attrs.get("Labels") or {}


def state_of(container) -> str:
    return container.attrs.get("State") or ""
