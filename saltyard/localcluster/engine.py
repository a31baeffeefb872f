"""The local Docker engine and the cluster's Docker network."""

from __future__ import annotations

import docker
import docker.errors

from saltyard.inventory import Inventory, InventoryError
from saltyard.localcluster.progress import step


def client() -> docker.DockerClient:
    try:
        engine = docker.from_env(timeout=300)
        engine.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeError(
            f"no Docker engine answers ({exc}); run `make up`, which starts one "
            "(scripts/host-setup.sh)"
        ) from None
    return engine


def ensure_network(engine: docker.DockerClient, inv: Inventory) -> None:
    """Create the cluster network with the inventory's subnet, or check the existing one."""
    net = inv.network
    name = net["name"]
    # Docker's name filter matches substrings ("saltyard" finds "saltyard-vmtest"): compare.
    existing = [n for n in engine.networks.list(names=[name]) if n.name == name]
    if existing:
        configs = existing[0].attrs.get("IPAM", {}).get("Config") or []
        subnets = {c.get("Subnet") for c in configs}
        if net["subnet"] not in subnets:
            raise InventoryError(
                f"Docker network {name!r} exists with subnet(s) {sorted(subnets)}, but the "
                f"inventory says {net['subnet']}; remove it (`make down`) or fix the inventory"
            )
        return
    step(f"creating Docker network {name} ({net['subnet']})")
    ipam = docker.types.IPAMConfig(
        pool_configs=[
            docker.types.IPAMPool(
                subnet=net["subnet"], gateway=net.get("gateway"), iprange=net.get("ip_range")
            )
        ]
    )
    engine.networks.create(name, driver="bridge", ipam=ipam, labels={"saltyard.cluster": inv.name})
