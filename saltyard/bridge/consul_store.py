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

import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import consul
import consul.base
import requests
from consul.exceptions import ACLPermissionDenied, ConsulException, NotFound

from .registrations import NODE_PREFIX, Registration, is_owned

log = logging.getLogger("saltyard.bridge.consul")

# Consul (1.8) refuses transactions of more than 64 operations; one is the session check.
MAX_TXN_OPS = 64


class ConsulError(Exception):
    """Consul answered with an error (``status``), or not at all (``status`` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ConsulUnavailable(ConsulError):
    """No answer: the agent is down, restarting or unreachable."""


class ConsulDenied(ConsulError):
    """403: the token lacks a permission (see docs/bridge.md for the policy)."""


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


def _call(fn: Callable[[], Any], what: str) -> Any:
    """Run one py-consul call, mapping its and requests' errors onto ours."""
    try:
        return fn()
    except requests.RequestException as exc:
        raise ConsulUnavailable(f"{what}: no answer from Consul: {exc}") from exc
    except ACLPermissionDenied as exc:
        raise ConsulDenied(f"{what}: permission denied by Consul ACLs: {exc}", 403) from exc
    except NotFound as exc:
        raise ConsulError(f"{what}: not found: {exc}", 404) from exc
    except ConsulException as exc:
        text = str(exc)
        status = int(text[:3]) if text[:3].isdigit() else None
        if status in (500, 502, 503, 504) and "leader" in text.lower():
            raise ConsulUnavailable(f"{what}: {text}", status) from exc
        raise ConsulError(f"{what}: {text}", status) from exc


def _raw_response(response: consul.base.Response) -> consul.base.Response:
    return response


class ConsulStore:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"Consul URL {url!r}: expected http(s)://HOST[:PORT]")
        self.url = url
        self.client = consul.Consul(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8500),
            scheme=parsed.scheme,
            token=token,
            connections_timeout=timeout,
        )
        # py-consul lets CONSUL_HTTP_TOKEN override the argument; the caller decides instead.
        self.client.token = token

    # ------------------------------------------------------------------ raw requests

    def _put_raw(self, path: str, body: Any, what: str) -> tuple[int, Any]:
        """PUT through py-consul's transport, returning (status, decoded body) unchecked. Used
        where py-consul falls short: its txn call sends no ACL token, its session call refuses
        TTLs under 10 s (Consul's minimum is the server's ``session_ttl_min``), and both hide
        the error body the bridge needs."""
        response = _call(
            lambda: self.client.http.put(
                _raw_response,
                path,
                data=json.dumps(body),
                headers=self.client.prepare_headers(),
            ),
            what,
        )
        try:
            decoded = json.loads(response.body) if response.body else None
        except ValueError:
            decoded = response.body
        if response.code == 403:
            raise ConsulDenied(f"{what}: permission denied by Consul ACLs: {decoded}", 403)
        if response.code >= 500:
            raise ConsulUnavailable(f"{what}: HTTP {response.code}: {decoded}", response.code)
        return response.code, decoded

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> Snapshot:
        """Every node on the bridge's prefix, with the owned services on it."""
        snap = Snapshot()
        _, nodes = _call(lambda: self.client.catalog.nodes(), "listing catalog nodes")
        for node in nodes or []:
            name = node.get("Node", "")
            if not name.startswith(NODE_PREFIX):
                continue
            found = _call(lambda name=name: self.client.catalog.node(name), f"reading node {name}")
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
                    snap.services[service_id] = Registration.from_catalog(name, service)
                else:
                    entry.foreign_services.add(service_id)
            snap.nodes[name] = entry
        return snap

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
            found = _call(
                lambda: self.client.session.renew(session_id), "renewing the leader session"
            )
        except ConsulError as exc:
            if exc.status == 404:
                return False
            raise
        return bool(found)

    def destroy_session(self, session_id: str) -> None:
        _call(lambda: self.client.session.destroy(session_id), "destroying the leader session")

    def acquire(self, key: str, session_id: str, value: str) -> bool:
        return bool(
            _call(
                lambda: self.client.kv.put(key, value, acquire=session_id),
                f"acquiring the lock {key}",
            )
        )

    def release(self, key: str, session_id: str) -> bool:
        return bool(
            _call(
                lambda: self.client.kv.put(key, None, release=session_id),
                f"releasing the lock {key}",
            )
        )

    def lock_holder(
        self, key: str, index: str | None = None, wait: str | None = None
    ) -> tuple[str | None, str | None]:
        """(index, session holding ``key`` or None). With ``index``, a blocking query that
        returns when the key changes or ``wait`` passes."""
        found = _call(
            lambda: self.client.kv.get(key, index=index, wait=wait), f"reading the lock {key}"
        )
        index, entry = found
        return index, (entry or {}).get("Session") or None

    # ------------------------------------------------------------------ fenced writes

    def apply(self, ops: list[dict], key: str, session_id: str) -> None:
        """Run ``ops`` (see the op_* builders) in transactions of at most MAX_TXN_OPS, each
        guarded by this session holding ``key``. Raises LockLost if it does not."""
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
    put on a node that does not exist). ``node_addresses``: nodes already right, by name."""
    ops: list[dict] = []
    done = dict(node_addresses)
    for reg in registrations:
        if done.get(reg.node) != reg.address:
            ops.append(op_node_set(reg.node, reg.address, reg.node_meta()))
            done[reg.node] = reg.address
        ops.append(op_service_set(reg))
    return ops
