"""Allocations in Consul KV, the IPAM plugin's only state: one key per allocated address,
``<prefix>/<pool>/<address>`` (prefix ``saltyard/ipam`` by default), whose value is the JSON of
an ``Allocation``.

Why one key per address: Consul's check-and-set makes each allocation atomic on its own. An
address is taken by creating its key with ``cas=0``, which Consul refuses when the key exists,
so two hosts (or two threads) racing for one address cannot both win, and a loser simply tries
the next free address. Nothing reads a free list and then writes it back, so no lost update can
hand out an address twice. A release deletes with ``cas=<ModifyIndex>`` of the record it read,
so it never deletes an allocation made again in between. One write per allocation also means a
failure never leaves anything half-allocated.

The store talks to Consul through the project's one client (saltyard/clients/consul.py).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from ipaddress import IPv4Address
from typing import Any, TypeVar

from saltyard.clients.consul import ConsulClient, ConsulError

from .errors import AddressTaken, IpamError, PoolFull, StoreUnavailable
from .pools import Pool

log = logging.getLogger("saltyard.ipam.store")

DEFAULT_PREFIX = "saltyard/ipam"
# A dynamic allocation starts at a random one of the first SPREAD free addresses: hosts that
# allocate at the same moment then mostly try different keys instead of all losing the race for
# the lowest one, while addresses are still handed out roughly from the bottom of the range.
SPREAD = 32
# Listings per dynamic allocation: a pass only ends without an address when every address its
# listing showed free was taken by other requests meanwhile (each such pass means others got
# addresses), so a few passes end every race but one against a flood of allocations.
PASSES = 10
# A specific address or a release retries this often when its record changes under it.
RETRIES = 5

T = TypeVar("T")


def now_text() -> str:
    """UTC wall-clock time, as the records carry it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Allocation:
    """One allocated address. ``host`` is the plugin's host (the only one that may release or
    replay it); ``mac`` the endpoint's MAC address Docker sent with the request (its identity
    until a container is known); ``container``, ``container_name``, ``task_id`` (the Marathon
    task, from the container's ``MESOS_TASK_ID``), ``network`` and ``endpoint`` are filled in
    by reconciliation once a container holds the address. ``time`` is when it was allocated,
    ``updated`` when it last changed. ``modify_index`` is Consul's, not part of the value."""

    pool: str
    address: str
    host: str
    mac: str | None = None
    network: str | None = None
    endpoint: str | None = None
    container: str | None = None
    container_name: str | None = None
    task_id: str | None = None
    time: str = ""
    updated: str | None = None
    modify_index: int = 0

    def value(self) -> str:
        body = asdict(self)
        body.pop("modify_index")
        return json.dumps(body, sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for listings (``salt-run ipam.list``), Consul's index included."""
        return asdict(self)

    @property
    def ip(self) -> IPv4Address:
        return IPv4Address(self.address)

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Allocation:
        """From a Consul KV entry; raises ValueError for a value that is not a record."""
        raw = entry.get("Value")
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw or "")
        if not isinstance(body, dict):
            raise ValueError(f"not a JSON object: {raw!r}")
        known = {f.name for f in fields(cls)} - {"modify_index"}
        record = cls(
            **{k: v for k, v in body.items() if k in known},
            modify_index=int(entry.get("ModifyIndex") or 0),
        )
        IPv4Address(record.address)  # raises ValueError for a bad one
        return record


class AllocationStore:
    """Allocations of pools under one key prefix.

    ``consul``: a ConsulClient, or a function making one; with a function each thread gets its
    own client (the plugin serves Docker's requests on many threads, and a requests session is
    not meant to be shared between threads)."""

    def __init__(
        self,
        consul: ConsulClient | Callable[[], ConsulClient],
        prefix: str = DEFAULT_PREFIX,
    ):
        self.prefix = prefix.strip("/")
        if not self.prefix:
            raise ValueError("the key prefix must not be empty")
        self._shared = consul if isinstance(consul, ConsulClient) else None
        self._connect = None if isinstance(consul, ConsulClient) else consul
        self._local = threading.local()

    # ------------------------------------------------------------------ Consul access

    @property
    def consul(self) -> ConsulClient:
        if self._shared is not None:
            return self._shared
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
        return client

    def _call(self, fn: Callable[[ConsulClient], T], what: str) -> T:
        consul = self.consul
        try:
            return consul.call(lambda: fn(consul), what)
        except ConsulError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def key(self, pool: str, address: IPv4Address | str) -> str:
        return f"{self.prefix}/{pool}/{address}"

    # ------------------------------------------------------------------ reading

    def read(self, pool: str, address: IPv4Address | str) -> Allocation | None:
        key = self.key(pool, address)
        _, entry = self._call(lambda c: c.api.kv.get(key), f"reading {key}")
        if entry is None:
            return None
        try:
            return Allocation.from_entry(entry)
        except (ValueError, TypeError) as exc:
            # Someone wrote something else there: the address is taken, but not by a record
            # this plugin may change; refuse rather than overwrite it.
            raise IpamError(f"{key} holds something other than an allocation: {exc}") from None

    def taken(self, pool: str) -> set[IPv4Address]:
        """The addresses of ``pool`` that have a key (whatever their value)."""
        prefix = f"{self.prefix}/{pool}/"
        _, keys = self._call(lambda c: c.api.kv.get(prefix, keys=True), f"listing {prefix}")
        out: set[IPv4Address] = set()
        for key in keys or []:
            try:
                out.add(IPv4Address(key[len(prefix) :]))
            except ValueError:
                continue  # not an address key: nothing this plugin hands out
        return out

    def list(self, pool: str | None = None) -> list[Allocation]:
        """Every allocation (of one pool), by pool and address. Keys whose value is not a
        record are logged and left out."""
        prefix = f"{self.prefix}/{pool}/" if pool else f"{self.prefix}/"
        _, entries = self._call(lambda c: c.api.kv.get(prefix, recurse=True), f"reading {prefix}")
        out: list[Allocation] = []
        for entry in entries or []:
            try:
                out.append(Allocation.from_entry(entry))
            except (ValueError, TypeError) as exc:
                log.warning("%s is not an allocation record: %s", entry.get("Key"), exc)
        out.sort(key=lambda a: (a.pool, int(a.ip)))
        return out

    # ------------------------------------------------------------------ check-and-set writes

    def create(self, record: Allocation) -> bool:
        """Create the record's key unless it exists (``cas=0``); False when it exists."""
        key = self.key(record.pool, record.address)
        value = record.value()
        return bool(self._call(lambda c: c.api.kv.put(key, value, cas=0), f"creating {key}"))

    def update(self, record: Allocation, **changes: Any) -> Allocation | None:
        """Write ``record`` with ``changes`` if its key is still at ``record.modify_index``;
        the new record, or None when it changed (or went) since it was read."""
        new = replace(record, **changes, updated=now_text())
        key = self.key(new.pool, new.address)
        value, index = new.value(), record.modify_index
        if not self._call(lambda c: c.api.kv.put(key, value, cas=index), f"updating {key}"):
            return None
        return self.read(new.pool, new.address) or new

    def delete(self, record: Allocation) -> bool:
        """Delete the record's key if it is still at ``record.modify_index``."""
        key = self.key(record.pool, record.address)
        index = record.modify_index
        return bool(self._call(lambda c: c.api.kv.delete(key, cas=index), f"deleting {key}"))

    # ------------------------------------------------------------------ allocation

    def allocate(self, pool: Pool, host: str, *, mac: str | None = None) -> Allocation:
        """A free address of ``pool`` for ``host``; raises PoolFull when there is none."""
        for _ in range(PASSES):
            free = self._free(pool)
            if not free:
                raise PoolFull(pool.name, pool.size)
            start = random.randrange(min(len(free), SPREAD))
            for address in free[start:] + free[:start]:
                record = Allocation(pool.name, str(address), host, mac=mac, time=now_text())
                if self.create(record):
                    return record
                # Lost the race for this address (taken since the listing): the next one.
        if not self._free(pool):
            raise PoolFull(pool.name, pool.size)
        raise IpamError(
            f"pool {pool.name!r}: no address could be taken in {PASSES} passes: every free "
            "address was taken by another request first; try again"
        )

    def _free(self, pool: Pool) -> list[IPv4Address]:
        taken = self.taken(pool.name)
        return [a for a in pool.addresses() if a not in taken]

    def allocate_address(
        self, pool: Pool, address: IPv4Address, host: str, *, mac: str | None = None
    ) -> tuple[Allocation, bool]:
        """``address`` of ``pool`` for ``host``: (record, True when it was already this
        host's). Docker asks for specific addresses when a user names one (``--ip``) and when
        it replays its endpoints after an engine restart; the replay must get the same answer,
        so an address this host already holds is answered again, unless the request's MAC
        shows it is for another endpoint. Another host's address is refused."""
        refusal = pool.refusal(address)
        if refusal:
            raise IpamError(refusal)
        for _ in range(RETRIES):
            record = Allocation(pool.name, str(address), host, mac=mac, time=now_text())
            if self.create(record):
                return record, False
            current = self.read(pool.name, address)
            if current is None:
                continue  # released since: create again
            if current.host != host:
                raise AddressTaken(
                    f"{address} of pool {pool.name!r} is allocated to host {current.host!r} "
                    f"(since {current.time}); this is host {host!r}"
                )
            if mac and current.mac and mac.lower() != current.mac.lower():
                raise AddressTaken(
                    f"{address} of pool {pool.name!r} is allocated on this host to the endpoint "
                    f"with MAC {current.mac}; a request with MAC {mac} is not a replay of it"
                )
            # The check-and-set write is a fence: a reconciliation that is about to free this
            # record (it read the old index) now fails, so the answer stays true.
            updated = self.update(current, mac=current.mac or mac)
            if updated is not None:
                return updated, True
        raise IpamError(f"{address} of pool {pool.name!r} kept changing; try again")

    def release(self, pool: str, address: IPv4Address, host: str) -> Allocation | None:
        """Free ``host``'s allocation of ``address``: the record freed, or None when there was
        none (a release that comes twice, or after reconciliation freed it, is not an error).
        Another host's allocation is refused."""
        for _ in range(RETRIES):
            current = self.read(pool, address)
            if current is None:
                return None
            if current.host != host:
                raise AddressTaken(
                    f"{address} of pool {pool!r} is allocated to host {current.host!r}, not to "
                    f"this host {host!r}: not released"
                )
            if self.delete(current):
                return current
        raise IpamError(f"{address} of pool {pool!r} kept changing while being released")


def list_allocations(
    consul: ConsulClient, pool: str | None = None, prefix: str = DEFAULT_PREFIX
) -> list[dict[str, Any]]:
    """Every allocation in Consul (of one pool), sorted by pool and address, as plain data:
    ``[{"pool", "address", "host", "mac", "network", "endpoint", "container",
    "container_name", "task_id", "time", "updated", "modify_index"}, ...]``. What the Salt side
    (``salt-run ipam.list``) shows; ``consul kv get -recurse saltyard/ipam/`` shows the same."""
    return [a.as_dict() for a in AllocationStore(consul, prefix).list(pool)]


def by_key(records: Iterable[Allocation]) -> dict[tuple[str, str], Allocation]:
    """(pool, address) -> record."""
    return {(r.pool, r.address): r for r in records}
