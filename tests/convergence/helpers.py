"""Shared by the convergence tests."""

from __future__ import annotations

import os

import testinfra

from saltyard import inventory
from saltyard.localcluster import vm

PROFILE = os.environ.get("SALTYARD_TEST_PROFILE", "full")
TASK_IMAGE = "saltyard-test/web:1"


def host(node: str):
    """A testinfra host for a node of the local cluster: its container, or its VM over SSH."""
    me = inventory.load().node(node)
    if me.is_vm:
        return vm_host(me.address, vm.STATE_DIR)
    return testinfra.get_host(f"docker://saltyard-{node}")


def vm_host(address: str, state_dir):
    """A testinfra host for a VM, reached the way the cluster reaches it (vm.ssh_command)."""
    return testinfra.get_host(
        f"ssh://{vm.SSH_USER}@{address}",
        ssh_identity_file=str(vm.ssh_key_path(state_dir)),
        ssh_extra_args=" ".join(vm.SSH_OPTIONS),
    )


def docker_app(
    app_id: str,
    image: str,
    instances: int,
    *,
    env: str = "fat",
    cmd: str = "exec python3 -m http.server $PORT0",
    health_check: dict | None = None,
) -> dict:
    """A Marathon app of one Docker container with one random host port, pinned to the agents
    of `env` (the constraint the bridge also reads the environment from)."""
    app = {
        "id": app_id,
        "cmd": cmd,
        "cpus": 0.1,
        "mem": 64,
        "instances": instances,
        "constraints": [["env", "CLUSTER", env]],
        "container": {
            "type": "DOCKER",
            "docker": {"image": image, "network": "BRIDGE"},
            "portMappings": [{"containerPort": 0, "hostPort": 0}],
        },
    }
    if health_check:
        app["healthChecks"] = [health_check]
    return app


def push_test_image(cluster) -> str:
    """The node image (Debian + python3), pushed by the build node into the cluster registry as
    `<VIP>:5000/saltyard-test/web:1`, the way a release build pushes: through the build node's
    engine and the LVS director, with the push user. Agents pull it (through the emulator)
    with the pull user."""
    return cluster.push_node_image(TASK_IMAGE)
