"""The bridge's side of Consul (py-consul): what the bridge owns in the catalog, the leader
session and lock, and catalog writes fenced by that lock.

Why the catalog API on external nodes: a Consul agent's anti-entropy makes its own node's
services match what was registered with *that agent*, so services put on an agent's node by
anyone else are deleted again. The bridge therefore registers through ``/v1/catalog`` on one
external node per Marathon agent host (``marathon-<host>``, node meta ``external-node=true``,
the convention consul-esm also uses), which no agent syncs, and nobody but the bridge changes.

Why transactions: every write is a ``/v1/txn`` whose first operation is a KV ``check-session``
on the leader key. If this bridge lost the lock (its session expired, another bridge holds the
key), Consul refuses the whole transaction, so a deposed bridge cannot write even one entry,
however late it notices. The catalog register/deregister endpoints have no such guard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from saltyard.clients.consul import ConsulClient, ConsulDenied, ConsulError, ConsulUnavailable

from .registrations import NODE_PREFIX, Registration, is_owned

__all__ = ["ConsulDenied", "ConsulError", "ConsulStore", "ConsulUnavailable", "LockLost"]

log = logging.getLogger("saltyard.bridge.consul")

# Consul (1.8) refuses transactions of more than 64 operations; one is the session check.
MAX_TXN_OPS = 64


class LockLost(ConsulError):
    """A fenced write was refused because this bridge's session does not hold the lock."""


@dataclass
class NodeInfo:
    name: str
    address: str
    meta: dict[str, str]
    modify_index: int
    owned: bool
    foreign_services: set[str] = field(default_factory=set)  # service ids it does not own


@dataclass
class Snapshot:
    """What the catalog holds on the bridge's node-name prefix."""

    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    services: dict[str, Registration] = field(default_factory=dict)  # owned, by service id


class ConsulStore:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0):
        if "//" not in url:
            raise ValueError(f"Consul URL {url!r}: expected http(s)://HOST[:PORT]")
        self.url = url
        self.consul = ConsulClient(url, token, timeout=timeout)
        self.client = self.consul.api
        self._call = self.consul.call

    def _put_raw(self, path: str, body: Any, what: str) -> tuple[int, Any]:
        """Used where py-consul falls short: its txn call sends no ACL token, its session call
        refuses TTLs under 10 s (Consul's minimum is the server's ``session_ttl_min``), and
        both hide the error body the bridge needs."""
        return self.consul.put(path, body, what)

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> Snapshot:
        """Every node on the bridge's prefix, with the owned services on it."""
        snap = Snapshot()
        _, nodes = self._call(lambda: self.client.catalog.nodes(), "listing catalog nodes")
        for node in nodes or []:
            name = node.get("Node", "")
            if not name.startswith(NODE_PREFIX):
                continue
            found = self._call(
                lambda name=name: self.client.catalog.node(name), f"reading node {name}"
            )
            detail = found[1] if found else None
            if not detail or not detail.get("Node"):
                continue  # removed between the two reads
            info = detail["Node"]
            entry = NodeInfo(
                name=name,
                address=info.get("Address", ""),
                meta=info.get("Meta") or {},
                modify_index=int(info.get("ModifyIndex") or 0),
                owned=is_owned(info.get("Meta")),
            )
            for service_id, service in (detail.get("Services") or {}).items():
                if entry.owned and is_owned(service.get("Meta")):
                    snap.services[service_id] = Registration.from_catalog(
                        name, service, entry.address
                    )
                else:
                    entry.foreign_services.add(service_id)
            snap.nodes[name] = entry
        return snap

    def kv_tree(self, prefix: str) -> list[dict[str, Any]]:
        """Every KV entry under ``prefix`` (one recursive read), as Consul answers them
        (``Key``, ``Value``, ``ModifyIndex``, ...).

        A recursive read answers only the keys the token may read, and a token that may read
        none of them gets an empty answer, not an error: a token without the rule would look
        like a prefix with nothing under it. So the prefix key itself is read first, a plain
        read that Consul refuses (403, ConsulDenied) to such a token."""
        self._call(lambda: self.client.kv.get(prefix), f"reading {prefix} (access check)")
        _, entries = self._call(
            lambda: self.client.kv.get(prefix, recurse=True), f"reading {prefix} recursively"
        )
        return list(entries or [])

    # ------------------------------------------------------------------ session and lock

    def create_session(self, name: str, ttl: float, lock_delay: float) -> str:
        body = {
            "Name": name,
            "TTL": f"{ttl:g}s",
            "LockDelay": f"{lock_delay:g}s",
            "Behavior": "release",
        }
        status, answer = self._put_raw("/v1/session/create", body, "creating the leader session")
        if status != 200 or not isinstance(answer, dict) or "ID" not in answer:
            raise ConsulError(f"creating the leader session: HTTP {status}: {answer}", status)
        return answer["ID"]

    def renew_session(self, session_id: str) -> bool:
        """False when Consul no longer knows the session (expired, destroyed, data lost)."""
        try:
            found = self._call(
                lambda: self.client.session.renew(session_id), "renewing the leader session"
            )
        except ConsulError as exc:
            if exc.status == 404:
                return False
            raise
        return bool(found)

    def destroy_session(self, session_id: str) -> None:
        self._call(lambda: self.client.session.destroy(session_id), "destroying the leader session")

    def acquire(self, key: str, session_id: str, value: str) -> bool:
        return bool(
            self._call(
                lambda: self.client.kv.put(key, value, acquire=session_id),
                f"acquiring the lock {key}",
            )
        )

    def release(self, key: str, session_id: str) -> bool:
        return bool(
            self._call(
                lambda: self.client.kv.put(key, None, release=session_id),
                f"releasing the lock {key}",
            )
        )

    def lock_holder(
        self, key: str, index: str | None = None, wait: str | None = None
    ) -> tuple[str | None, str | None]:
        """(index, session holding ``key`` or None). With ``index``, a blocking query that
        returns when the key changes or ``wait`` passes."""
        found = self._call(
            lambda: self.client.kv.get(key, index=index, wait=wait), f"reading the lock {key}"
        )
        index, entry = found
        return index, (entry or {}).get("Session") or None

    # ------------------------------------------------------------------ fenced writes

    def apply(self, ops: list[dict], key: str, session_id: str) -> None:
        """Run ``ops`` (see the op_* builders) in transactions of at most MAX_TXN_OPS, each
        guarded by this session holding ``key``. Raises LockLost if it does not.

        Each transaction is atomic; a list longer than one is not: the chunks commit one after
        another, in the order of ``ops`` (the caller orders them so that every state in between
        is safe), and a failure stops the rest with the earlier chunks applied."""
        guard = {"KV": {"Verb": "check-session", "Key": key, "Session": session_id}}
        size = MAX_TXN_OPS - 1
        for start in range(0, len(ops), size):
            batch = [guard, *ops[start : start + size]]
            status, answer = self._put_raw("/v1/txn", batch, "catalog transaction")
            if status == 200:
                continue
            errors = (answer or {}).get("Errors") if isinstance(answer, dict) else None
            errors = errors or [{"OpIndex": None, "What": str(answer)}]
            if any(e.get("OpIndex") == 0 for e in errors):
                raise LockLost(f"the lock {key} is not held by session {session_id}", status)
            what = "; ".join(f"op {e.get('OpIndex')}: {e.get('What')}" for e in errors)
            raise ConsulError(f"catalog transaction refused (HTTP {status}): {what}", status)

    def delete_fenced(self, key: str, modify_index: int, lock_key: str, session_id: str) -> bool:
        """Delete ``key`` if it is still at ``modify_index``, in one transaction guarded by
        this session holding ``lock_key``. False when the key changed or went since it was
        read (nothing deleted); raises LockLost when the session does not hold the lock and
        ConsulDenied when the token may not read or delete the key.

        ``check-index`` before the ``delete-cas``: Consul's delete-cas of a key that no longer
        exists succeeds without doing anything, which would read as a delete; check-index
        fails for a missing key as for a changed one."""
        ops = [
            {"KV": {"Verb": "check-session", "Key": lock_key, "Session": session_id}},
            {"KV": {"Verb": "check-index", "Key": key, "Index": modify_index}},
            {"KV": {"Verb": "delete-cas", "Key": key, "Index": modify_index}},
        ]
        status, answer = self._put_raw("/v1/txn", ops, f"deleting {key}")
        if status == 200:
            return True
        errors = (answer or {}).get("Errors") if isinstance(answer, dict) else None
        errors = errors or [{"OpIndex": None, "What": str(answer)}]
        what = "; ".join(f"op {e.get('OpIndex')}: {e.get('What')}" for e in errors)
        if any(e.get("OpIndex") == 0 for e in errors):
            raise LockLost(f"the lock {lock_key} is not held by session {session_id}", status)
        if any("permission denied" in str(e.get("What")).lower() for e in errors):
            raise ConsulDenied(f"deleting {key}: permission denied by Consul ACLs: {what}", 403)
        if status == 409 and all(e.get("OpIndex") in (1, 2) for e in errors):
            return False  # changed or gone since it was read
        raise ConsulError(f"deleting {key}: transaction refused (HTTP {status}): {what}", status)


# ---------------------------------------------------------------------- transaction operations


def op_node_set(node: str, address: str, meta: dict[str, str]) -> dict:
    return {"Node": {"Verb": "set", "Node": {"Node": node, "Address": address, "Meta": meta}}}


def op_node_delete(node: str, modify_index: int) -> dict:
    # cas: fails instead of deleting a node someone changed since the bridge read it.
    return {"Node": {"Verb": "delete-cas", "Node": {"Node": node, "ModifyIndex": modify_index}}}


def op_service_set(reg: Registration) -> dict:
    return {"Service": {"Verb": "set", "Node": reg.node, "Service": reg.service_body()}}


def op_service_delete(reg: Registration) -> dict:
    # Consul needs the service name too, to check the token's service permission.
    return {
        "Service": {
            "Verb": "delete",
            "Node": reg.node,
            "Service": {"ID": reg.service_id, "Service": reg.service},
        }
    }


def registration_ops(
    registrations: Iterable[Registration], node_addresses: dict[str, str]
) -> list[dict]:
    """Service ``set`` operations, each node's ``set`` before its services (a service cannot be
    put on a node that does not exist). ``node_addresses``: nodes already right, by name. A
    node's address is its agent host's, whatever address its services have."""
    ops: list[dict] = []
    done = dict(node_addresses)
    for reg in registrations:
        if done.get(reg.node) != reg.node_address:
            ops.append(op_node_set(reg.node, reg.node_address, reg.node_meta()))
            done[reg.node] = reg.node_address
        ops.append(op_service_set(reg))
    return ops
