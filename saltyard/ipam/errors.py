"""The errors of the IPAM plugin. Every one carries a message that names the value at fault,
because the plugin's only way to explain a refusal is the text Docker shows the user
(``{"Err": "..."}`` becomes the error of ``docker network create`` or ``docker run``)."""

from __future__ import annotations


class IpamError(Exception):
    """A request the plugin refuses or cannot serve; the message says why."""


class PoolError(IpamError, ValueError):
    """A pool definition is wrong (gateway outside the subnet, overlapping pools, ...)."""


class PoolFull(IpamError):
    """Every allocatable address of the pool is taken."""

    def __init__(self, pool: str, size: int):
        super().__init__(
            f"pool {pool!r} is full: all {size} allocatable addresses are allocated "
            "(see `salt-run ipam.list` or `consul kv get -recurse saltyard/ipam/" + pool + "/`)"
        )
        self.pool = pool
        self.size = size


class AddressTaken(IpamError):
    """A specific address was asked for and belongs to someone else."""


class StoreUnavailable(IpamError):
    """Consul did not answer, or refused (ACLs); nothing was allocated or released."""
