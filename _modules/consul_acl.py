"""
Consul leader and ACL policies and tokens: a thin adapter over ``saltyard.clients.consul`` (the
project's one Consul client, built on py-consul), which the bridge uses too.

Salt ships a ``consul`` module for the legacy ACL API; this one (``consul_acl``) uses the ACL
system of Consul 1.4+ and lets a token be created with a chosen SecretID, so that the master
can generate every token (salt/secrets.yaml) and the servers only register them.

Settings (pillar or minion config, ``config.get``)::

    consul:
      http_addr: 127.0.0.1:8500                # the local agent
      acl:
        master_token: <uuid>                   # on the servers only
"""

from __future__ import annotations

import time
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard.clients import consul as consul_client

    HAS_SALTYARD = True
except ImportError:  # the saltyard package (or py-consul, which it needs) is missing
    HAS_SALTYARD = False

__virtualname__ = "consul_acl"


def __virtual__():
    if not HAS_SALTYARD:
        return (
            False,
            "consul_acl: the saltyard package (saltyard.clients.consul, with py-consul) is not "
            "importable in the minion's Python",
        )
    return __virtualname__


def _client(token: str | None = None) -> consul_client.ConsulClient:
    addr = __salt__["config.get"]("consul:http_addr", "127.0.0.1:8500") or "127.0.0.1:8500"
    token = token or __salt__["config.get"]("consul:acl:master_token", None)
    try:
        return consul_client.ConsulClient(addr, token, timeout=10)
    except ValueError as exc:
        raise CommandExecutionError(f"pillar consul:http_addr: {exc}") from exc


def _call(client: consul_client.ConsulClient, func, *args, **kwargs):
    try:
        return client.call(lambda: func(*args, **kwargs), "Consul")
    except consul_client.ConsulError as exc:
        # The message already says whether Consul did not answer or what it refused.
        raise CommandExecutionError(str(exc)) from exc


def reachable() -> bool:
    """
    True when the local agent answers.

    CLI Example:

    .. code-block:: bash

        salt '*' consul_acl.reachable
    """
    try:
        _client().leader()
    except Exception:  # any failure means "not (yet) reachable"
        return False
    return True


def leader() -> str:
    """
    The Raft leader's address, or "" when there is none.

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.leader
    """
    client = _client()
    return _call(client, client.leader) or ""


def wait_for_leader(timeout: float = 120) -> str:
    """
    Wait until the datacenter has a leader (and this agent answers); return its address.

    Where this minion holds the ACL master token (the server that registers policies and
    tokens), also wait until the ACL system answers: Consul 1.4 to 1.10 servers start in legacy
    ACL mode and switch to the new ACL system a moment after the first election. Until then
    every ACL request fails with "The ACL system is currently in legacy mode."

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.wait_for_leader timeout=60
    """
    deadline = time.monotonic() + float(timeout)
    holds_master = bool(__salt__["config.get"]("consul:acl:master_token", None))
    last = ""
    while time.monotonic() < deadline:
        try:
            found = leader()
            if found:
                if holds_master:
                    client = _client()
                    # Raises while the ACL system is in legacy mode.
                    _call(client, client.api.acl.policy.list)
                return found
            last = "no leader elected yet"
        except CommandExecutionError as exc:
            last = str(exc)
        time.sleep(1)
    raise CommandExecutionError(
        f"Consul is not ready for ACL changes after {timeout:.0f}s: {last}"
        if holds_master
        else f"Consul has no leader after {timeout:.0f}s: {last}"
    )


def policy(name: str) -> dict[str, Any] | None:
    """
    The ACL policy ``name`` (with its rules), or None.

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.policy agent
    """
    client = _client()
    for item in _call(client, client.api.acl.policy.list):
        if item["Name"] == name:
            return _call(client, client.api.acl.policy.read, item["ID"])
    return None


def policy_set(name: str, rules: str, description: str = "") -> dict[str, Any]:
    """
    Create the ACL policy ``name`` with ``rules`` (HCL or JSON), or update it.

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.policy_set lb 'service_prefix "" { policy = "read" }'
    """
    client = _client()
    current = policy(name)
    # py-consul JSON-encodes `rules` again (it expects a dict), which turns HCL text into a
    # string Consul cannot parse; the HTTP API takes the HCL text as it is.
    body = {"Name": name, "Description": description, "Rules": rules}
    if current is None:
        return _put(client, "/v1/acl/policy", body)
    return _put(client, f"/v1/acl/policy/{current['ID']}", {"ID": current["ID"], **body})


def _put(client: consul_client.ConsulClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _call(client, client.put_json, path, body, f"PUT {path}")


def token(secret_id: str) -> dict[str, Any] | None:
    """
    The ACL token whose SecretID is ``secret_id`` (its accessor, policies ...), or None.

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.token 6f0c...
    """
    client = _client()
    for item in _call(client, client.api.acl.token.list):
        if item.get("SecretID") == secret_id:
            return item
        if "SecretID" not in item:
            # Listing hides secrets from tokens without acl:write; read it by accessor.
            full = _call(client, client.api.acl.token.read, item["AccessorID"])
            if full.get("SecretID") == secret_id:
                return full
    return None


def token_set(secret_id: str, policies: list[str], description: str = "") -> dict[str, Any]:
    """
    Create the token with SecretID ``secret_id`` linked to ``policies`` (names), or relink it.

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.token_set 6f0c... '[lb]' description='load balancers'
    """
    client = _client()
    current = token(secret_id)
    links = [{"Name": name} for name in policies]
    if current is None:
        return _call(
            client,
            client.api.acl.token.create,
            secret_id=secret_id,
            policies_name=list(policies),
            description=description,
        )
    # py-consul has no token update with policy names; the HTTP API takes them directly.
    body = {"Description": description, "Policies": links, "SecretID": secret_id}
    return _put(client, f"/v1/acl/token/{current['AccessorID']}", body)
