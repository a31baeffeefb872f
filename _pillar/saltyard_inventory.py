"""ext_pillar: a node's roles and the cluster's shape, from salt/inventory.yaml.

Runs on the master, keyed by the authenticated minion id, so a minion cannot claim a role.
A bad inventory (unknown role, a node listed twice, ...) raises, and Salt then refuses every state
run with the message, before anything changes.

Master configuration:

    ext_pillar:
      - saltyard_inventory: /srv/saltyard/salt/inventory.yaml
"""

try:
    from saltyard import inventory as saltyard_inventory

    HAS_SALTYARD = True
except ImportError:
    HAS_SALTYARD = False

__virtualname__ = "saltyard_inventory"


def __virtual__():
    if not HAS_SALTYARD:
        return (False, "the saltyard package is not installed in the salt-master's Python")
    return __virtualname__


def ext_pillar(minion_id, pillar, path):  # noqa: ARG001 - the ext_pillar signature
    inv = saltyard_inventory.load(path)
    # salt-run (orchestration) compiles pillar for "<master id>_master": that is the master.
    master = inv.master.name
    if minion_id == f"{master}_master":
        minion_id = master
    try:
        node = inv.node(minion_id)
    except saltyard_inventory.InventoryError:
        raise saltyard_inventory.InventoryError(
            f"minion {minion_id!r} is not in the inventory {path}; add it there first"
        ) from None
    return {
        "saltyard": {
            "node": {
                "name": node.name,
                "address": node.address,
                "env": node.env,
                # The Mesos role an agent's resources are reserved for (its --default_role).
                "mesos_role": node.mesos_role,
            },
            "roles": list(node.all_roles),
            "cluster": {
                "name": inv.name,
                "domain": inv.domain,
                "network": inv.network,
                # In promotion order: the bridge, the states and the release workflow read
                # the environments here, never a list of their own.
                "environments": list(inv.environments),
            },
            "nodes": [
                {
                    "name": n.name,
                    "address": n.address,
                    "env": n.env,
                    "roles": list(n.all_roles),
                    "mesos_role": n.mesos_role,
                }
                for n in inv.nodes
            ],
            # Members of each role in inventory order (ZooKeeper ids follow this order).
            "members": {
                role: [{"name": n.name, "address": n.address} for n in inv.with_role(role)]
                for role in sorted({r for n in inv.nodes for r in n.all_roles})
            },
        }
    }
