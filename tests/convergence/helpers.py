"""Shared by the convergence tests."""

from __future__ import annotations

import os
import subprocess

import testinfra

from saltyard import inventory
from saltyard.localcluster import image, vm
from saltyard.localcluster.cluster import container_name

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
    build = next(n.name for n in cluster.nodes if n.has_role("build"))
    # Through the registry pair's VIP on the LVS director, as a release build pushes.
    registry = cluster.pillar(build, "registry:vip:address")
    assert registry, "no registry:vip:address in build1's pillar"
    ref = f"{registry}:5000/{TASK_IMAGE}"
    node_image = image.build()
    subprocess.run(
        f"docker save {node_image} | docker exec -i {container_name(build)} docker load -q",
        shell=True,
        check=True,
        capture_output=True,
    )
    password = cluster.pillar(build, "registry:users:push")
    assert password and "*" not in password, "no push password in build1's pillar"
    subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            container_name(build),
            "docker",
            "login",
            "-u",
            "push",
            "--password-stdin",
            f"{registry}:5000",
        ],
        input=password.encode(),
        check=True,
        capture_output=True,
    )
    try:
        cluster.exec(build, ["docker", "tag", node_image, ref])
        cluster.exec(build, ["docker", "push", "-q", ref])
    finally:
        cluster.exec(build, ["docker", "logout", f"{registry}:5000"], check=False)
    return ref
