"""Shared by the convergence tests."""

from __future__ import annotations

import os

import testinfra

from saltyard import inventory
from saltyard.localcluster import vm

PROFILE = os.environ.get("SALTYARD_TEST_PROFILE", "full")


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
