"""pyinfra inventory built from salt/inventory.yaml.

Environment:
  SALTYARD_CONNECT    docker (the local cluster's node containers, default) or ssh (real hosts,
                      reached at their inventory address; SALTYARD_SSH_USER, default root)
  SALTYARD_PROFILE    which inventory profile to bootstrap (default full)
  SALTYARD_STATE_DIR  where the wheelhouse tarball and the pre-generated keys are (default .state)
  SALTYARD_SITE       which pillar site the master serves (default local)
"""

import os

from saltyard import inventory as saltyard_inventory

_inv = saltyard_inventory.load()
_connect = os.environ.get("SALTYARD_CONNECT", "docker")
_state_dir = os.path.abspath(os.environ.get("SALTYARD_STATE_DIR", ".state"))
_common = {
    "saltyard_master_address": _inv.master.address,
    "saltyard_state_dir": _state_dir,
    "saltyard_site": os.environ.get("SALTYARD_SITE", "local"),
    "saltyard_minion_ids": [n.name for n in _inv.nodes],
}


def _host(node):
    data = dict(
        _common, saltyard_minion_id=node.name, saltyard_is_master=node.has_role("salt-master")
    )
    if _connect == "docker":
        return (f"@docker/saltyard-{node.name}", data)
    data["ssh_user"] = os.environ.get("SALTYARD_SSH_USER", "root")
    return (node.address, data)


nodes = [_host(n) for n in _inv.profile(os.environ.get("SALTYARD_PROFILE", "full"))]
