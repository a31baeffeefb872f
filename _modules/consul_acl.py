"""
Consul leader and ACL policies and tokens, through py-consul (the maintained python-consul).

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

import json
import time
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    import consul
    from consul.callback import CB

    HAS_CONSUL = True
except ImportError:
    HAS_CONSUL = False

__virtualname__ = "consul_acl"


def __virtual__():
    if not HAS_CONSUL:
        return (False, "consul_acl: py-consul is not installed in the minion's Python")
    return __virtualname__


def _client(token: str | None = None) -> consul.Consul:
    addr = __salt__["config.get"]("consul:http_addr", "127.0.0.1:8500") or "127.0.0.1:8500"
    host, _, port = addr.rpartition(":")
    token = token or __salt__["config.get"]("consul:acl:master_token", None)
    client = consul.Consul(
        host=host or "127.0.0.1", port=int(port), token=token, connections_timeout=10
    )
    # py-consul lets CONSUL_HTTP_TOKEN in the environment override the argument.
    client.token = token
    return client


def _call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except consul.ConsulException as exc:
        raise CommandExecutionError(f"Consul: {exc}") from exc
    except OSError as exc:
        raise CommandExecutionError(f"no answer from the local Consul agent: {exc}") from exc


def reachable() -> bool:
    """
    True when the local agent answers.

    CLI Example:

    .. code-block:: bash

        salt '*' consul_acl.reachable
    """
    try:
        _client().status.leader()
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
    return _call(_client().status.leader) or ""


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
                    _call(_client().acl.policy.list)  # raises while ACLs are in legacy mode
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
    for item in _call(client.acl.policy.list):
        if item["Name"] == name:
            return _call(client.acl.policy.read, item["ID"])
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


def _put(client: consul.Consul, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _call(
        client.http.put,
        CB.json(),
        path,
        data=json.dumps(body),
        headers=client.prepare_headers(),
    )


def token(secret_id: str) -> dict[str, Any] | None:
    """
    The ACL token whose SecretID is ``secret_id`` (its accessor, policies ...), or None.

    CLI Example:

    .. code-block:: bash

        salt control1 consul_acl.token 6f0c...
    """
    client = _client()
    for item in _call(client.acl.token.list):
        if item.get("SecretID") == secret_id:
            return item
        if "SecretID" not in item:
            # Listing hides secrets from tokens without acl:write; read it by accessor.
            full = _call(client.acl.token.read, item["AccessorID"])
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
            client.acl.token.create,
            secret_id=secret_id,
            policies_name=list(policies),
            description=description,
        )
    # py-consul has no token update with policy names; the HTTP API takes them directly.
    body = {"Description": description, "Policies": links, "SecretID": secret_id}
    return _put(client, f"/v1/acl/token/{current['AccessorID']}", body)
