"""
The IPAM plugin's record: every address it has allocated, as Consul holds it (issue 17 item 5;
docs/ipam.md).

    salt-run ipam.list
    salt-run ipam.list pool=tasks

A thin adapter over ``saltyard.ipam.list_allocations`` and the project's one Consul client. It
reads through the master node's own Consul agent with the ``ipam_read`` token (read-only on
``saltyard/ipam/``; salt/consul/policies/ipam-read.hcl), which the master generates into its own
pillar (salt/secrets.yaml). ``consul kv get -recurse saltyard/ipam/`` shows the same keys.

Salt (3008, and 3007 before it) ships no ``ipam`` runner, so this one takes the plain name that
the issue and the docs use (tests/unit/test_salt_names.py keeps it that way).
"""

from __future__ import annotations

from typing import Any

try:
    import salt.pillar

    from saltyard.clients.consul import ConsulClient, ConsulError
    from saltyard.ipam import IpamError, list_allocations

    HAS_SALTYARD = True
except ImportError:  # the master's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "ipam"
# ``list`` is the name operators type; ``list_`` keeps Python's builtin usable here.
__func_alias__ = {"list_": "list"}

CONSUL = "127.0.0.1:8500"  # the master node's own Consul agent
TOKEN = "consul:acl:tokens:ipam_read"
PREFIX = "ipam:consul:key_prefix"


def __virtual__():
    if not HAS_SALTYARD:
        return False, "ipam: the saltyard package (saltyard.ipam) is not importable by the master"
    return __virtualname__


def _pillar() -> dict:
    """The master's own pillar (the id ``<master>_master``, as orchestrations see it)."""
    compiler = salt.pillar.get_pillar(
        __opts__, {}, __opts__["id"], saltenv=__opts__.get("saltenv") or "base"
    )
    try:
        return compiler.compile_pillar()
    finally:
        compiler.destroy()


def _get(pillar: dict, path: str, default: Any = None) -> Any:
    node: Any = pillar
    for key in path.split(":"):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _failed(message: str) -> dict:
    # A non-zero retcode makes `salt-run` (and an orchestration step) fail.
    __context__["retcode"] = 1
    return {"Error": message}


def list_(pool: str | None = None) -> list | dict:
    """
    Every allocation of the IPAM plugin (of ``pool`` only, when given), sorted by pool and
    address: pool, address, host, MAC, network, endpoint, container, container name, Marathon
    task id, when it was allocated and last updated, and Consul's modify index.

    CLI Example:

    .. code-block:: bash

        salt-run ipam.list
        salt-run ipam.list pool=tasks
        salt-run ipam.list --out=json
    """
    pillar = _pillar()
    token = _get(pillar, TOKEN)
    if not token:
        return _failed(f"pillar {TOKEN} is empty on the master (salt/secrets.yaml generates it)")
    prefix = str(_get(pillar, PREFIX) or "saltyard/ipam").strip("/")
    try:
        return list_allocations(ConsulClient(CONSUL, token=token), pool=pool, prefix=prefix)
    except (ConsulError, IpamError, OSError) as exc:
        return _failed(f"reading the allocations under {prefix}/ from Consul at {CONSUL}: {exc}")
