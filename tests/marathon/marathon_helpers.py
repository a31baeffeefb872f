"""Shared helpers for the Marathon emulator tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

import time

TASK_IMAGE = "marathon-emu-test/task:1"
LABEL = "saltyard.marathon-emulator"


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


def wait_until(predicate, timeout: float, interval: float = 0.25, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


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
