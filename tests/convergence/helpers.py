"""Shared by the convergence tests."""

from __future__ import annotations

import json
import os
import re

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
    cmd: str | None = "exec python3 -m http.server $PORT0",
    health_check: dict | None = None,
    accepted_roles: list[str] | None = None,
    environment: dict[str, str] | None = None,
) -> dict:
    """A Marathon app of one Docker container with one random host port, pinned to the agents
    of `env` (the constraint the bridge also reads the environment from). `cmd` None: the
    image's own entrypoint (tinyweb's image has no shell)."""
    app = {
        "id": app_id,
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
    if cmd is not None:
        app["cmd"] = cmd
    if health_check:
        app["healthChecks"] = [health_check]
    if accepted_roles is not None:
        app["acceptedResourceRoles"] = accepted_roles
    if environment:
        app["env"] = environment
    return app


# On the agent VM (tests/support/tinyweb): /kernel/web may run on agent-prod or agent-vm (which
# is reserved for vm-agents), /kernel/pinned only on agent-vm, so that a drain of agent-vm moves
# the first and has nowhere to go for the second.
KERNEL_WEB = "/kernel/web"
KERNEL_PINNED = "/kernel/pinned"
VM_ROLE = "vm-agents"


def vm_agent_apps(image: str) -> list[dict]:
    """The two tinyweb apps in prod that the kernel rollout of agent-vm drains (its test and
    benchmarks/kernel_rollout.py)."""
    # tinyweb answers 503 on /health from its SIGTERM on, for 3 s, while it still serves.
    common = {
        "env": "prod",
        "cmd": None,
        "health_check": {
            "protocol": "HTTP",
            "path": "/health",
            "portIndex": 0,
            "intervalSeconds": 2,
        },
        "environment": {"TINYWEB_DRAIN_SECONDS": "3"},
    }
    return [
        docker_app(KERNEL_WEB, image, 2, accepted_roles=["*", VM_ROLE], **common),
        docker_app(KERNEL_PINNED, image, 1, accepted_roles=[VM_ROLE], **common),
    ]


def push_test_image(cluster) -> str:
    """The node image (Debian + python3), pushed by the build node into the cluster registry as
    `<VIP>:5000/saltyard-test/web:1`, the way a release build pushes: through the build node's
    engine and the LVS director, with the push user. Agents pull it (through the emulator)
    with the pull user."""
    return cluster.push_node_image(TASK_IMAGE)


# Salt's "unclosed ..." resource warnings go to stderr, which Cluster.exec merges with stdout.
UNCLOSED = re.compile(
    r"(\[WARNING *\] )?unclosed [\w.]+ <[^>]*>; call ``destroy\(\)`` or use as a context manager\n?"
)


def orchestration_steps(text: str) -> dict[str, dict]:
    """The steps' results in `salt-run --out=json state.orchestrate` output, by state id (the
    output may carry warnings and log lines before the JSON, a failed step's error among them,
    with braces of its own)."""
    # Salt's "unclosed ..." resource warnings go to stderr, which the exec merges with stdout:
    # one can land inside the JSON, mid-string.
    text = UNCLOSED.sub("", text)
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            result, _ = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict) and "data" in result:
            (steps,) = result["data"].values()
            return {key.split("_|-")[1]: {"key": key, **ret} for key, ret in steps.items()}
        start = text.find("{", start + 1)
    raise AssertionError(f"no orchestration result in:\n{text}")
