"""The cluster inventory: load, validate and query ``salt/inventory.yaml``.

One file describes the nodes; the Vagrantfile, the salt-master's ext_pillar and the tests all go
through this module, so a bad inventory is refused the same way everywhere, before anything
changes.

    python -m saltyard.inventory check [PATH]
    python -m saltyard.inventory json [PATH] [--profile NAME]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from saltyard.marathon_constraints import role_error

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "salt" / "inventory.yaml"

# Every role a node may carry (DESIGN.md, "Components and the roles that carry them").
ROLES = frozenset(
    {
        "salt-master",
        "zookeeper",
        "mesos-master",
        "mesos-agent",
        "marathon",
        "consul-server",
        "discovery",
        "docker",
        "registry",
        "lvs",
        "lb",
        "logging",
        "build",
    }
)
# Roles that run containers need the Docker engine; every Docker host gets the kernel checks.
IMPLIED = {
    "mesos-agent": ("docker",),
    "registry": ("docker",),
    "lb": ("docker",),
    "build": ("docker",),
    "docker": ("kernel",),
}
# The environments applications are released through, in promotion order, when the inventory's
# cluster.environments does not name its own (a site may add e.g. staging between uat and prod).
DEFAULT_ENVIRONMENTS = ("fat", "uat", "prod")
# What a node of the local cluster is: a systemd container (the default), or a QEMU VM on the same
# bridge for roles that need a kernel of their own (IPVS for lvs: the host kernel lacks it).
KINDS = ("container", "vm")
# RFC 1123 host label: minion ids double as host names.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class InventoryError(ValueError):
    """The inventory is invalid; the message names the file, the node and the bad value."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    roles: tuple[str, ...]  # as written, without implied roles
    env: str | None = None
    all_roles: tuple[str, ...] = field(default=())  # base + roles + implied, sorted
    kind: str = "container"
    # A mesos-agent whose resources are reserved for this Mesos role (the agent's
    # --default_role): only apps whose acceptedResourceRoles name it run there.
    mesos_role: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.all_roles

    @property
    def is_vm(self) -> bool:
        return self.kind == "vm"


@dataclass(frozen=True)
class Inventory:
    path: str
    name: str
    domain: str
    network: dict
    nodes: tuple[Node, ...]
    profiles: dict
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS  # in promotion order

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise InventoryError(f"{self.path}: no node named {name!r} in the inventory")

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has_role(role)]

    @property
    def master(self) -> Node:
        return self.with_role("salt-master")[0]

    def profile(self, name: str) -> list[Node]:
        if name not in self.profiles:
            raise InventoryError(
                f"{self.path}: unknown profile {name!r}; known: {', '.join(sorted(self.profiles))}"
            )
        members = self.profiles[name]
        if members == "all":
            return list(self.nodes)
        return [self.node(m) for m in members]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "name": self.name,
            "domain": self.domain,
            "network": self.network,
            "nodes": [asdict(n) for n in self.nodes],
            "profiles": self.profiles,
            "environments": list(self.environments),
        }


def expand_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    """base, the given roles and everything they imply, sorted."""
    result = {"base"}
    todo = list(roles)
    while todo:
        role = todo.pop()
        if role in result:
            continue
        result.add(role)
        todo.extend(IMPLIED.get(role, ()))
    return tuple(sorted(result))


def _require(mapping: dict, key: str, where: str, path: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise InventoryError(f"{path}: {where} lacks the required key {key!r}")
    return mapping[key]


def parse_environments(value: object, path: str = "<inventory>") -> tuple[str, ...]:
    """cluster.environments: a non-empty list of unique DNS labels, in promotion order (each
    name becomes a Mesos attribute value, a Consul tag and part of the lb's host names)."""
    where = f"{path}: cluster.environments"
    if not isinstance(value, list) or not value:
        raise InventoryError(
            f"{where} {value!r}: expected a non-empty list of environment names in promotion "
            f"order (default: {', '.join(DEFAULT_ENVIRONMENTS)})"
        )
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InventoryError(
                f"{where}: environment {name!r} is not a DNS label (lowercase letters, digits "
                "and '-', at most 63)"
            )
        if name in seen:
            raise InventoryError(f"{where}: environment {name!r} is listed twice")
        seen.add(name)
    return tuple(value)


def parse(data: object, path: str = "<inventory>") -> Inventory:
    """Validate inventory data (already parsed from YAML) and return an Inventory."""
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: the inventory must be a mapping with 'cluster' and 'nodes'")
    cluster = _require(data, "cluster", "the inventory", path)
    network = _require(cluster, "network", "cluster", path)
    try:
        subnet = ipaddress.ip_network(_require(network, "subnet", "cluster.network", path))
    except ValueError as exc:
        raise InventoryError(f"{path}: cluster.network.subnet: {exc}") from None
    ip_range = None
    if network.get("ip_range") is not None:
        try:
            ip_range = ipaddress.ip_network(network["ip_range"])
        except ValueError as exc:
            raise InventoryError(f"{path}: cluster.network.ip_range: {exc}") from None
        if not ip_range.subnet_of(subnet):
            raise InventoryError(
                f"{path}: cluster.network.ip_range {ip_range} is not inside the subnet {subnet}"
            )

    environments = DEFAULT_ENVIRONMENTS
    if "environments" in cluster:
        environments = parse_environments(cluster["environments"], path)
    known_envs = ", ".join(environments)

    raw_nodes = _require(data, "nodes", "the inventory", path)
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise InventoryError(f"{path}: 'nodes' must be a non-empty list")

    nodes: list[Node] = []
    seen_names: dict[str, int] = {}
    seen_addresses: dict[str, str] = {}
    for index, raw in enumerate(raw_nodes):
        where = f"nodes[{index}]"
        name = _require(raw, "name", where, path)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InventoryError(
                f"{path}: {where}: node name {name!r} is not a valid host name "
                "(lowercase letters, digits and '-')"
            )
        where = f"node {name!r}"
        if name in seen_names:
            raise InventoryError(
                f"{path}: node {name!r} is listed twice (nodes[{seen_names[name]}] and "
                f"nodes[{index}]); each node must appear once"
            )
        seen_names[name] = index

        address = _require(raw, "address", where, path)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InventoryError(
                f"{path}: {where}: address {address!r} is not an IP address"
            ) from None
        if ip not in subnet:
            raise InventoryError(
                f"{path}: {where}: address {address} is outside the cluster subnet {subnet}"
            )
        if address in seen_addresses:
            raise InventoryError(
                f"{path}: {where}: address {address} is already used by node "
                f"{seen_addresses[address]!r}"
            )
        seen_addresses[address] = name

        roles = _require(raw, "roles", where, path)
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InventoryError(f"{path}: {where}: roles must be a list of role names")
        for role in roles:
            if role not in ROLES:
                raise InventoryError(
                    f"{path}: {where}: unknown role {role!r}; known roles: "
                    f"{', '.join(sorted(ROLES))}"
                )

        env = raw.get("env")
        if env is not None and env not in environments:
            raise InventoryError(
                f"{path}: {where}: unknown env {env!r}; expected one of "
                f"cluster.environments ({known_envs})"
            )
        if "mesos-agent" in roles and env is None:
            raise InventoryError(f"{path}: {where}: a mesos-agent needs an env ({known_envs})")
        mesos_role = raw.get("mesos_role")
        if mesos_role is not None:
            if "mesos-agent" not in roles:
                raise InventoryError(
                    f"{path}: {where}: mesos_role {mesos_role!r} is for mesos-agent nodes only"
                )
            if mesos_role == "*" or role_error(mesos_role):
                raise InventoryError(
                    f"{path}: {where}: mesos_role {mesos_role!r} is not a role to reserve an "
                    "agent for (letters, digits, '_', '.', '-'; '*' is the unreserved default)"
                )
        unknown_keys = set(raw) - {"name", "address", "roles", "env", "kind", "mesos_role"}
        if unknown_keys:
            raise InventoryError(f"{path}: {where}: unknown keys {sorted(unknown_keys)}")
        kind = raw.get("kind", "container")
        if kind not in KINDS:
            raise InventoryError(
                f"{path}: {where}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
            )
        if kind == "vm":
            # Docker hands out addresses inside ip_range only; a VM's must never be one of them.
            if ip_range is None:
                raise InventoryError(
                    f"{path}: {where} is a VM, which needs cluster.network.ip_range (the part "
                    "of the subnet where Docker hands out addresses) to keep its address free"
                )
            if ip in ip_range:
                raise InventoryError(
                    f"{path}: {where}: VM address {ip} is inside cluster.network.ip_range "
                    f"{ip_range}, where Docker hands out addresses to containers; give the VM "
                    "an address outside it"
                )
        nodes.append(
            Node(
                name=name,
                address=str(ip),
                roles=tuple(roles),
                env=env,
                all_roles=expand_roles(tuple(roles)),
                kind=kind,
                mesos_role=mesos_role,
            )
        )

    masters = [n.name for n in nodes if "salt-master" in n.roles]
    if len(masters) != 1:
        raise InventoryError(
            f"{path}: exactly one node must carry the salt-master role, found {masters or 'none'}"
        )

    # Quorum-based ensembles need an odd member count (pitfall 7 in REFERENCE.md).
    for role in ("zookeeper", "mesos-master", "consul-server"):
        members = [n.name for n in nodes if role in n.roles]
        if members and len(members) not in (1, 3, 5):
            raise InventoryError(
                f"{path}: {len(members)} nodes carry the {role} role ({', '.join(members)}); "
                "a quorum needs 1, 3 or 5 members"
            )

    profiles = data.get("profiles") or {"full": "all"}
    for pname, members in profiles.items():
        if members == "all":
            continue
        if not isinstance(members, list):
            raise InventoryError(f"{path}: profile {pname!r} must be 'all' or a list of node names")
        for member in members:
            if member not in seen_names:
                raise InventoryError(f"{path}: profile {pname!r} names unknown node {member!r}")
        if masters[0] not in members:
            raise InventoryError(f"{path}: profile {pname!r} must include the salt master")

    return Inventory(
        path=path,
        name=str(cluster.get("name", "saltyard")),
        domain=str(_require(cluster, "domain", "cluster", path)),
        network=dict(network),
        nodes=tuple(nodes),
        profiles=dict(profiles),
        environments=environments,
    )


def check_vip(address: object, network: dict, nodes: list[dict]) -> str:
    """The registry VIP (pillar ``registry:vip:address``) as a string, or ValueError naming it.

    ``network`` and ``nodes`` are the pillar's ``saltyard:cluster:network`` and
    ``saltyard:nodes`` (the inventory ext_pillar's). The one place these rules live: the states
    refuse a bad VIP at render time (``registry.vip_problem`` in states/registry/vip.jinja), and
    the PKI ext_pillar keeps a bad VIP out of the registries' certificates.
    """
    text = str(address)
    bad = f"pillar registry:vip:address {json.dumps(text)}"
    subnet_text = (network or {}).get("subnet")
    if not subnet_text:
        raise ValueError(
            f"{bad}: pillar saltyard:cluster:network:subnet is missing, so the VIP cannot be "
            "checked (the master's inventory ext_pillar sets it)"
        )
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{bad} is not an IPv4 address") from None
    subnet = ipaddress.ip_network(subnet_text)
    if ip not in subnet:
        raise ValueError(
            f"{bad} is outside the cluster network {subnet} (saltyard:cluster:network:subnet): "
            "the director takes the VIP on that network, and the registries and their clients "
            "share it"
        )
    if ip in (subnet.network_address, subnet.broadcast_address):
        raise ValueError(f"{bad} is the network or broadcast address of {subnet}")
    if text == str(network.get("gateway") or ""):
        raise ValueError(f"{bad} is the cluster network's gateway")
    for node in nodes or []:
        if str(node.get("address")) == text:
            raise ValueError(
                f"{bad} is the address of node {node.get('name')} in the inventory; the VIP "
                "needs an address of its own"
            )
    ip_range = network.get("ip_range")
    if ip_range and ip in ipaddress.ip_network(ip_range):
        raise ValueError(
            f"{bad} is inside Docker's ip_range {ip_range} (saltyard:cluster:network:ip_range), "
            f"where Docker may give it to a container; choose a free address of {subnet} "
            "outside it"
        )
    return text


def check_ipam_pools(
    pools: object, network: dict, nodes: list[dict], vips: dict[str, object] | None = None
) -> tuple:
    """The IPAM plugin's pools (pillar ``ipam:pools``) validated against the cluster network,
    as ``saltyard.ipam.pools.Pool`` objects, or ValueError naming the bad value.

    ``network`` and ``nodes`` are the pillar's ``saltyard:cluster:network`` and
    ``saltyard:nodes``; ``vips`` maps a VIP's pillar path to its address (unset ones are
    skipped). A pool's containers share the nodes' segment through the macvlan parent, so its
    subnet must lie inside the cluster network, and it must never hand out an address that a
    node, a VIP, the cluster's gateway or Docker's ip_range (where the node engines' own
    networks hand out addresses) already uses. A reserved address of the pool is clear of them.
    The pool rules themselves (gateway inside the subnet, overlapping pools, ...) are
    ``saltyard.ipam.pools``'s.
    """
    # Imported here: the inventory is read where the IPAM code is not needed (the Vagrantfile).
    from saltyard.ipam.pools import parse_pools, pool_overlapping

    where = "pillar ipam:pools"
    try:
        parsed = parse_pools(pools)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    subnet_text = (network or {}).get("subnet")
    if not subnet_text:
        raise ValueError(
            f"{where}: pillar saltyard:cluster:network:subnet is missing, so the pools cannot be "
            "checked (the master's inventory ext_pillar sets it)"
        )
    subnet = ipaddress.ip_network(subnet_text)
    for pool in parsed:
        if pool.subnet.version != subnet.version or not pool.subnet.subnet_of(subnet):
            raise ValueError(
                f"{where}: pool {pool.name!r} subnet {pool.subnet} is outside the cluster network "
                f"{subnet} (saltyard:cluster:network:subnet): its containers join the nodes' "
                "network through the macvlan parent"
            )

    def refuse(used: str, what: str) -> None:
        pool = pool_overlapping(parsed, used)
        if pool is not None:
            raise ValueError(
                f"{where}: pool {pool.name!r} range {pool.range_text} would hand out {used}, "
                f"{what}; choose a range clear of it (or list it in the pool's reserved)"
            )

    for node in nodes or []:
        refuse(str(node.get("address")), f"the address of node {node.get('name')}")
    if network.get("gateway"):
        refuse(str(network["gateway"]), "the cluster network's gateway")
    for path, address in sorted((vips or {}).items()):
        if address:
            refuse(str(address), f"the VIP {path}")
    ip_range = network.get("ip_range")
    if ip_range:
        pool = pool_overlapping(parsed, str(ip_range))
        if pool is not None:
            raise ValueError(
                f"{where}: pool {pool.name!r} range {pool.range_text} overlaps Docker's ip_range "
                f"{ip_range} (saltyard:cluster:network:ip_range), where the nodes' engines hand "
                "out addresses; choose a range outside it"
            )
    return parsed


def load(path: str | os.PathLike | None = None) -> Inventory:
    """Read and validate the inventory (default: $SALTYARD_INVENTORY or salt/inventory.yaml)."""
    path = Path(path or os.environ.get("SALTYARD_INVENTORY") or DEFAULT_PATH)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"cannot read the inventory {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from None
    return parse(data, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saltyard.inventory")
    parser.add_argument("command", choices=["check", "json"])
    parser.add_argument("path", nargs="?")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    try:
        inv = load(args.path)
        nodes = inv.profile(args.profile) if args.profile else list(inv.nodes)
    except InventoryError as exc:
        print(f"saltyard: invalid inventory: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(
            f"{inv.path}: {len(inv.nodes)} nodes, environments {' -> '.join(inv.environments)}, "
            "inventory is valid"
        )
    else:
        data = inv.to_dict()
        data["selected"] = [n.name for n in nodes]
        json.dump(data, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
