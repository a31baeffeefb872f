"""What the release orchestration keeps in Consul KV, through the project's Consul client:

- ``saltyard/release/<app>/<env>/canary-share``: the canary's share of the requests, in percent,
  which consul-template on every lb node turns into nginx's split (docs/lb.md);
- ``saltyard/release/<app>/record``: the release record (saltyard/release/record.py), written
  with check-and-set so two writers never overwrite each other's step.

The orchestration's token has the policy salt/consul/policies/release.hcl.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from saltyard.clients.consul import ConsulClient, ConsulError
from saltyard.release.record import Record


class StoreError(Exception):
    """A value that cannot be stored or read as it is; the message names it."""


def share_key(app: str, env: str) -> str:
    return f"saltyard/release/{app}/{env}/canary-share"


def record_key(app: str) -> str:
    return f"saltyard/release/{app}/record"


def format_share(percent: float) -> str:
    """The share as the lb template accepts it: 0 to 100, at most two decimals, no exponent."""
    try:
        value = Decimal(str(percent))
    except InvalidOperation:
        raise StoreError(f"canary share {percent!r} is not a number") from None
    if not value.is_finite() or not 0 <= value <= 100 or value != round(value, 2):
        raise StoreError(
            f"canary share {percent!r} must be from 0 to 100 with at most two decimals"
        )
    return format(value.normalize(), "f")


def set_share(client: ConsulClient, app: str, env: str, percent: float) -> str:
    text = format_share(percent)
    key = share_key(app, env)
    if not client.call(lambda: client.api.kv.put(key, text), f"setting {key} to {text}"):
        raise ConsulError(f"setting {key} to {text}: Consul did not store it")
    return text


def get_share(client: ConsulClient, app: str, env: str) -> str | None:
    key = share_key(app, env)
    _, entry = client.call(lambda: client.api.kv.get(key), f"reading {key}")
    return entry["Value"].decode() if entry and entry.get("Value") is not None else None


def load_record(client: ConsulClient, app: str) -> tuple[Record | None, int]:
    """The app's record and its ModifyIndex (0 when there is none), for ``save_record``."""
    key = record_key(app)
    _, entry = client.call(lambda: client.api.kv.get(key), f"reading {key}")
    if not entry or entry.get("Value") is None:
        return None, 0
    try:
        return Record.from_json(entry["Value"].decode()), int(entry["ModifyIndex"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{key} holds something that is not a release record: {exc}") from None


def save_record(client: ConsulClient, record: Record, index: int) -> int:
    """Write ``record`` if the key is still at ``index`` (0: must not exist); the new index.
    Someone else's write in between raises StoreError rather than being overwritten."""
    key = record_key(record.app)
    stored = client.call(
        lambda: client.api.kv.put(key, record.to_json(), cas=index), f"writing {key}"
    )
    if not stored:
        raise StoreError(
            f"{key} changed since it was read (index {index}): another run wrote it; "
            "nothing was overwritten"
        )
    _, entry = client.call(lambda: client.api.kv.get(key), f"reading {key} back")
    return int(entry["ModifyIndex"])
