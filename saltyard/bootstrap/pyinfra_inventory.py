"""pyinfra inventory built from salt/inventory.yaml.

Environment:
  SALTYARD_CONNECT    docker (the local cluster, default) or ssh (real hosts, reached at their
                      inventory address; SALTYARD_SSH_USER, default root). In the local cluster,
                      node containers are reached with @docker/saltyard-NODE, and nodes of kind
                      vm (QEMU VMs) over SSH as root with the cluster's key (STATE_DIR/ssh).
  SALTYARD_PROFILE    which inventory profile to bootstrap (default full)
  SALTYARD_STATE_DIR  where the wheelhouse tarball and the pre-generated keys are (default .state)
  SALTYARD_SITE       which pillar site the master serves (default local)
"""

import os
from pathlib import Path

from saltyard import inventory as saltyard_inventory
from saltyard.localcluster import vm

_inv = saltyard_inventory.load()
_connect = os.environ.get("SALTYARD_CONNECT", "docker")
_state_dir = os.path.abspath(os.environ.get("SALTYARD_STATE_DIR", ".state"))
_common = {
    "saltyard_master_address": _inv.master.address,
    "saltyard_state_dir": _state_dir,
    "saltyard_site": os.environ.get("SALTYARD_SITE", "local"),
    "saltyard_minion_ids": [n.name for n in _inv.nodes],
}


def _ssh_host(node, data, user):
    return (node.address, dict(data, ssh_user=user))


def _host(node):
    data = dict(
        _common, saltyard_minion_id=node.name, saltyard_is_master=node.has_role("salt-master")
    )
    if _connect != "docker":
        return _ssh_host(node, data, os.environ.get("SALTYARD_SSH_USER", "root"))
    if node.is_vm:
        # The VM is rebuilt with a new host key whenever the cluster is: nothing to remember.
        data |= {
            "ssh_key": str(vm.ssh_key_path(Path(_state_dir))),
            "ssh_strict_host_key_checking": "off",
            "ssh_known_hosts_file": "/dev/null",
        }
        return _ssh_host(node, data, vm.SSH_USER)
    return (f"@docker/saltyard-{node.name}", data)


nodes = [_host(n) for n in _inv.profile(os.environ.get("SALTYARD_PROFILE", "full"))]
