"""
The IPAM plugin on a node (``saltyard.ipam``, docs/ipam.md): the ipam role's render-time checks
of its pillar, and the running plugin's status.

The address rules live in ``saltyard.inventory.check_ipam_pools`` (over
``saltyard.ipam.pools``): a pool outside the cluster network, or one that would hand out a
node's address, a VIP, the cluster's gateway or part of Docker's ip_range, is refused with the
value named, when states/ipam renders, so before anything changes on the node.

Named ``saltyard_ipam``: Salt ships no ``ipam`` module, but a plain name would take one it
might ship (tests/unit/test_salt_names.py).
"""

from __future__ import annotations

import re
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard import inventory
    from saltyard.ipam import plugin_status

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "saltyard_ipam"

# The VIPs of the site's pillar that no pool may hand out (path -> read with config.get).
VIP_PATHS = ("registry:vip:address",)
# A Linux interface name: at most 15 characters, no '/', ':' or white space.
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def __virtual__() -> str | tuple[bool, str]:
    if not HAS_SALTYARD:
        return (False, "saltyard_ipam: the saltyard package (saltyard.ipam) is not importable")
    return __virtualname__


def pools_problem(pools: Any) -> str | None:
    """
    What is wrong with ``pools`` (pillar ``ipam:pools``) for this cluster, or None: each pool
    by ``saltyard.ipam.pools``'s rules, then against the cluster network, every node's
    address, the cluster's gateway, the registry VIP and Docker's ip_range (pillar
    ``saltyard:cluster:network``, ``saltyard:nodes``, ``registry:vip:address``).

    CLI Example:

    .. code-block:: bash

        salt agent-fat saltyard_ipam.pools_problem \\
            '[{"name": "tasks", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1",
               "range": "172.30.0.224/28"}]'
    """
    network = __salt__["config.get"]("saltyard:cluster:network", {}) or {}
    nodes = __salt__["config.get"]("saltyard:nodes", []) or []
    vips = {path: __salt__["config.get"](path, "") for path in VIP_PATHS}
    try:
        inventory.check_ipam_pools(pools, network, nodes, vips)
    except ValueError as exc:
        return str(exc)
    return None


def network_problem(network: dict, pools: Any) -> str | None:
    """
    What is wrong with ``network`` (pillar ``ipam:network``, its ``parent`` already chosen) for
    ``pools``, or None: its name, the pool it names, and a parent interface that this node does
    not have (by its grains, read when the minion started: a parent made since needs
    ``saltutil.refresh_grains``). The ``macvlan_network.present`` state checks the parent again
    on the node itself before it changes anything.

    CLI Example:

    .. code-block:: bash

        salt agent-fat saltyard_ipam.network_problem \\
            '{"name": "macvlan", "pool": "tasks", "parent": "eth0"}' \\
            '[{"name": "tasks", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1"}]'
    """
    network = network or {}
    name = str(network.get("name") or "")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        return (
            f"pillar ipam:network:name {name!r}: expected a Docker network name (letters, "
            "digits, '_', '.', '-')"
        )
    names = [p.get("name") for p in pools or [] if isinstance(p, dict)]
    pool = network.get("pool")
    if pool not in names:
        return (
            f"pillar ipam:network:pool {pool!r} is not a pool of ipam:pools "
            f"({', '.join(map(str, names)) or 'none'})"
        )
    parent = str(network.get("parent") or "")
    if not INTERFACE_RE.match(parent):
        return f"pillar ipam:network:parent {parent!r} is not an interface name"
    if parent == "lo":
        return "pillar ipam:network:parent 'lo': the loopback interface cannot be a macvlan parent"
    known = set(__grains__.get("hwaddr_interfaces") or {}) | set(
        __grains__.get("ip_interfaces") or {}
    )
    if parent not in known:
        return (
            f"pillar ipam:network:parent {parent!r}: node {__grains__.get('id')} has no such "
            f"interface (it has {', '.join(sorted(known)) or 'none'}); the macvlan network's "
            "parent must be this node's interface on the hosts' network"
        )
    return None


def status(socket: str = "/run/docker/plugins/saltyard-ipam.sock") -> dict:
    """
    The running plugin's view (``/Saltyard.Status`` on its socket): its pools, how many
    addresses Consul holds in each, its counters and the reconciliation's state.

    CLI Example:

    .. code-block:: bash

        salt agent-fat saltyard_ipam.status
    """
    try:
        return plugin_status(socket)
    except OSError as exc:
        raise CommandExecutionError(
            f"the IPAM plugin does not answer on {socket}: {exc} (systemctl status saltyard-ipam)"
        ) from exc
