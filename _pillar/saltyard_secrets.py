"""ext_pillar: secrets generated on the master, served only to the roles that need them.

The repository describes the secrets (salt/secrets.yaml); their values are generated once, with
the operating system's random source, into a store on the master (one file per secret, mode
0600) and never leave it except in the pillar of a node whose roles need them. Must come after
the saltyard_inventory ext_pillar, whose roles it reads.

Master configuration:

    ext_pillar:
      - saltyard_inventory: /srv/saltyard/salt/inventory.yaml
      - saltyard_secrets:
          catalogue: /srv/saltyard/salt/secrets.yaml
          store: /etc/salt/saltyard-secrets
"""

import base64
import os
import secrets
import uuid

import yaml

__virtualname__ = "saltyard_secrets"
FORMATS = ("urlsafe", "base64", "uuid")


def __virtual__():
    return __virtualname__


def _generate(size: int, kind: str) -> str:
    if kind == "uuid":
        # Consul ACL tokens: the SecretID is a UUID (random, version 4).
        return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    if kind == "base64":
        # Consul's gossip key: standard base64 of 16, 24 or 32 bytes.
        return base64.b64encode(secrets.token_bytes(size)).decode()
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).decode().rstrip("=")


def _value(store: str, name: str, size: int, kind: str = "urlsafe") -> str:
    path = os.path.join(store, name)
    try:
        # O_EXCL: when two pillar renders race, exactly one value is created.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as handle:
            return handle.read().strip()
    value = _generate(size, kind)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _put(tree: dict, path: str, value: str) -> None:
    keys = path.split(":")
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def ext_pillar(minion_id, pillar, catalogue, store):
    roles = pillar.get("saltyard", {}).get("roles")
    if not roles:
        raise ValueError(
            f"no saltyard:roles in the pillar of {minion_id!r}: list saltyard_inventory before "
            "saltyard_secrets in ext_pillar"
        )
    with open(catalogue) as handle:
        described = yaml.safe_load(handle) or {}
    os.makedirs(store, mode=0o700, exist_ok=True)
    result: dict = {}
    for name, spec in described.items():
        if not set(spec["roles"]) & set(roles):
            continue
        kind = spec.get("format", "urlsafe")
        if kind not in FORMATS:
            raise ValueError(
                f"secret {name!r}: unknown format {kind!r} (known: {', '.join(FORMATS)})"
            )
        value = _value(store, name, int(spec.get("bytes", 24)), kind)
        # One secret may appear at several places (a server's user list, a client's settings).
        places = spec["pillar"] if isinstance(spec["pillar"], list) else [spec["pillar"]]
        for place in places:
            if isinstance(place, str):
                _put(result, place, value)
                continue
            # {path, roles, with}: only for nodes with one of `roles`, and with plain values
            # beside it (a client's user name next to its password).
            unknown = set(place) - {"path", "roles", "with"}
            if unknown or "path" not in place:
                raise ValueError(
                    f"secret {name!r}: a pillar place needs path (and may have roles, with), "
                    f"got {sorted(place)}"
                )
            if "roles" in place and not set(place["roles"]) & set(roles):
                continue
            _put(result, place["path"], value)
            for path, plain in (place.get("with") or {}).items():
                _put(result, path, plain)
    return result
