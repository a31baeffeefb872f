"""The address pools the IPAM plugin hands out from: their definition, and the refusal of a bad one
with a message naming the value.

Pure functions over plain data (what the config file, or later the pillar, holds), no I/O, so
that the Salt render checks can refuse a bad pool before anything changes on a host.

A pool::

    {"name": "tasks", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1",
     "range": "172.30.0.128/26", "reserved": ["172.30.0.130", "172.30.0.140-172.30.0.149"]}

``range`` (optional, default the whole subnet) is a CIDR or ``FIRST-LAST`` inside the subnet;
``reserved`` (optional) lists addresses or ``FIRST-LAST`` ranges inside the subnet. The network
and broadcast addresses, the gateway and the reserved addresses are never handed out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .errors import PoolError

# A pool's name is part of Consul keys and Docker's PoolID: a DNS label keeps both plain.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Larger subnets are not container pools; the limit also bounds the work of a full scan.
MIN_PREFIX = 16
# The network, broadcast and gateway addresses, and at least one to hand out.
MAX_PREFIX = 30
POOL_KEYS = ("name", "subnet", "gateway", "range", "reserved")


@dataclass(frozen=True)
class Pool:
    """A validated pool. ``first``..``last`` is the allocatable range (inclusive); ``size`` the
    number of addresses it hands out (the range less the excluded ones)."""

    name: str
    subnet: IPv4Network
    gateway: IPv4Address
    first: IPv4Address
    last: IPv4Address
    reserved: frozenset[IPv4Address]
    size: int

    @property
    def range_text(self) -> str:
        """The range as a CIDR when it is exactly one, else ``FIRST-LAST``."""
        nets = list(ipaddress.summarize_address_range(self.first, self.last))
        return str(nets[0]) if len(nets) == 1 else f"{self.first}-{self.last}"

    def excluded(self, address: IPv4Address) -> str | None:
        """Why ``address`` is never handed out ("gateway", ...), or None."""
        if address == self.subnet.network_address:
            return "the network address"
        if address == self.subnet.broadcast_address:
            return "the broadcast address"
        if address == self.gateway:
            return "the gateway"
        if address in self.reserved:
            return "a reserved address"
        return None

    def refusal(self, address: IPv4Address) -> str | None:
        """Why this pool does not hand ``address`` out (a sentence naming both), or None."""
        if address not in self.subnet:
            return f"{address} is outside the subnet {self.subnet} of pool {self.name!r}"
        why = self.excluded(address)
        if why:
            return f"{address} is {why} of pool {self.name!r}, never handed out"
        if not self.first <= address <= self.last:
            return f"{address} is outside the range {self.range_text} of pool {self.name!r}"
        return None

    def hands_out(self, address: IPv4Address) -> bool:
        return self.refusal(address) is None

    def addresses(self) -> Iterator[IPv4Address]:
        """Every address the pool hands out, in ascending order."""
        for value in range(int(self.first), int(self.last) + 1):
            address = IPv4Address(value)
            if self.excluded(address) is None:
                yield address

    def with_prefix(self, address: IPv4Address) -> str:
        """``ADDRESS/PREFIXLEN``, the form Docker wants in answers."""
        return f"{address}/{self.subnet.prefixlen}"

    def as_dict(self) -> dict[str, Any]:
        """The definition back as plain data (status answers, listings)."""
        return {
            "name": self.name,
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "range": self.range_text,
            "reserved": [str(a) for a in sorted(self.reserved)],
            "size": self.size,
        }


def _address(pool: str, what: str, value: Any) -> IPv4Address:
    if isinstance(value, str):
        try:
            return IPv4Address(value.strip())
        except ValueError:
            pass
    raise PoolError(f"pool {pool!r}: {what} {value!r} is not an IPv4 address")


def _span(pool: str, what: str, value: Any, subnet: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    """``FIRST-LAST`` or a CIDR (or, for ``reserved``, one address) inside ``subnet``."""
    if not isinstance(value, str) or not value.strip():
        raise PoolError(f"pool {pool!r}: {what} {value!r}: expected a CIDR or FIRST-LAST")
    text = value.strip()
    if "-" in text:
        left, _, right = text.partition("-")
        first, last = _address(pool, what, left), _address(pool, what, right)
        if first > last:
            raise PoolError(f"pool {pool!r}: {what} {value!r} ends before it starts")
    elif "/" in text:
        try:
            net = IPv4Network(text, strict=True)
        except ValueError as exc:
            raise PoolError(f"pool {pool!r}: {what} {value!r} is not an IPv4 CIDR: {exc}") from None
        first, last = net.network_address, net.broadcast_address
    else:
        first = last = _address(pool, what, text)
    if first not in subnet or last not in subnet:
        raise PoolError(f"pool {pool!r}: {what} {value!r} is outside its subnet {subnet}")
    return first, last


def parse_pool(raw: Mapping[str, Any]) -> Pool:
    """One pool from plain data; raises PoolError naming the bad value."""
    if not isinstance(raw, Mapping):
        raise PoolError(f"a pool must be a mapping with name, subnet and gateway, not {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PoolError(
            f"pool name {name!r}: expected a DNS label (lowercase letters, digits, '-', "
            "at most 63 characters)"
        )
    unknown = sorted(set(raw) - set(POOL_KEYS))
    if unknown:
        raise PoolError(
            f"pool {name!r}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(POOL_KEYS)})"
        )
    text = raw.get("subnet")
    try:
        subnet = IPv4Network(str(text).strip(), strict=True) if isinstance(text, str) else None
    except ValueError as exc:
        hint = ""
        try:
            hint = f"; did you mean {IPv4Network(str(text).strip(), strict=False)}?"
        except ValueError:
            pass
        raise PoolError(
            f"pool {name!r}: subnet {text!r} is not an IPv4 CIDR: {exc}{hint}"
        ) from None
    if subnet is None:
        raise PoolError(
            f"pool {name!r}: subnet {text!r}: expected an IPv4 CIDR such as 10.0.0.0/24"
        )
    if not MIN_PREFIX <= subnet.prefixlen <= MAX_PREFIX:
        raise PoolError(
            f"pool {name!r}: subnet {subnet}: the prefix length must be /{MIN_PREFIX} to "
            f"/{MAX_PREFIX}"
        )
    if raw.get("gateway") is None:
        raise PoolError(f"pool {name!r}: a gateway is required (an address inside {subnet})")
    gateway = _address(name, "gateway", raw.get("gateway"))
    if gateway not in subnet:
        raise PoolError(f"pool {name!r}: gateway {gateway} is outside its subnet {subnet}")
    if gateway in (subnet.network_address, subnet.broadcast_address):
        raise PoolError(
            f"pool {name!r}: gateway {gateway} is the network or broadcast address of {subnet}"
        )
    if raw.get("range") is None:
        first, last = subnet.network_address, subnet.broadcast_address
    else:
        first, last = _span(name, "range", raw["range"], subnet)
    reserved_raw = raw.get("reserved") or []
    if not isinstance(reserved_raw, list | tuple):
        raise PoolError(f"pool {name!r}: reserved {reserved_raw!r}: expected a list of addresses")
    reserved: set[IPv4Address] = set()
    for entry in reserved_raw:
        low, high = _span(name, "reserved address", entry, subnet)
        reserved.update(IPv4Address(v) for v in range(int(low), int(high) + 1))
    pool = Pool(name, subnet, gateway, first, last, frozenset(reserved), 0)
    size = sum(1 for _ in pool.addresses())
    if size == 0:
        raise PoolError(
            f"pool {name!r}: range {pool.range_text} has no address to hand out (the network, "
            "broadcast and gateway addresses and the reserved ones are excluded)"
        )
    return Pool(name, subnet, gateway, first, last, frozenset(reserved), size)


def check_overlaps(pools: Sequence[Pool]) -> None:
    """Refuse two pools of one name or with overlapping subnets: one subnet is one L2 segment
    with one gateway, and two pools handing out from it would give one address twice."""
    for i, pool in enumerate(pools):
        for other in pools[:i]:
            if pool.name == other.name:
                raise PoolError(f"pool {pool.name!r} is defined twice")
            if pool.subnet.overlaps(other.subnet):
                raise PoolError(
                    f"pool {pool.name!r} subnet {pool.subnet} overlaps pool {other.name!r} "
                    f"subnet {other.subnet}"
                )


def parse_pools(raw: Any) -> tuple[Pool, ...]:
    """Every pool of a config's ``pools`` list, validated alone and together; raises PoolError
    naming the bad value."""
    if not isinstance(raw, list | tuple) or not raw:
        raise PoolError(f"pools {raw!r}: expected a non-empty list of pools")
    pools = tuple(parse_pool(entry) for entry in raw)
    check_overlaps(pools)
    return pools


def pool_overlapping(pools: Sequence[Pool], network: str) -> Pool | None:
    """The first pool that would hand out an address of ``network`` (an address or a CIDR), or
    None: for the checks that a pool stays clear of node addresses, VIPs and Docker's
    ip_range (an address a pool reserves is clear of it)."""
    net = IPv4Network(network, strict=False)
    for pool in pools:
        low = max(int(pool.first), int(net.network_address))
        high = min(int(pool.last), int(net.broadcast_address))
        if any(pool.excluded(IPv4Address(v)) is None for v in range(low, high + 1)):
            return pool
    return None


def parse_address(value: Any) -> IPv4Address | None:
    """An IPv4 address from Docker's ``Address`` (``10.0.0.5`` or ``10.0.0.5/24``), None for
    an empty one; raises PoolError naming a bad one."""
    if value in (None, ""):
        return None
    text = str(value).split("/", 1)[0].strip()
    try:
        return IPv4Address(text)
    except ValueError:
        raise PoolError(f"address {value!r} is not an IPv4 address") from None
