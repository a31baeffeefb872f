"""States: a Consul leader to exist, ACL policies and tokens as pillar says (test mode predicts)."""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "consul_acl"


def __virtual__():
    if "consul_acl.leader" not in __salt__:
        return (False, "the consul_acl execution module is not available")
    return __virtualname__


def _ret(name: str) -> dict[str, Any]:
    return {"name": name, "changes": {}, "result": True, "comment": ""}


def leader(name: str, timeout: float = 120) -> dict[str, Any]:
    """Wait for the datacenter to elect a leader and, on the server that holds the ACL master
    token, for the ACL system to leave legacy mode; steps that write to Consul require this.

    SLS Example:

    .. code-block:: yaml

        consul-leader:
          consul_acl.leader:
            - timeout: 120
    """
    ret = _ret(name)
    if __opts__["test"] and not __salt__["consul_acl.reachable"]():
        ret["result"] = None
        ret["comment"] = "Consul is not running yet; would wait for a leader"
        return ret
    try:
        ret["comment"] = f"Consul leader: {__salt__['consul_acl.wait_for_leader'](timeout)}"
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def policy_present(name: str, rules: str, description: str = "") -> dict[str, Any]:
    """The ACL policy ``name`` has exactly ``rules``.

    SLS Example:

    .. code-block:: yaml

        consul-policy-lb:
          consul_acl.policy_present:
            - name: lb
            - rules: 'service_prefix "" { policy = "read" }'
    """
    ret = _ret(name)
    if not isinstance(rules, str) or not rules.strip():
        ret["result"] = False
        ret["comment"] = f"policy {name!r}: rules must be non-empty HCL or JSON text"
        return ret
    if __opts__["test"] and not __salt__["consul_acl.reachable"]():
        ret["result"] = None
        ret["comment"] = f"Consul is not running yet; policy {name} would be created"
        return ret
    try:
        current = __salt__["consul_acl.policy"](name)
        if current and current.get("Rules", "").strip() == rules.strip():
            ret["comment"] = f"policy {name} is as defined"
            return ret
        verb = "created" if current is None else "updated"
        ret["changes"] = {"policy": name, "action": verb}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"policy {name} would be {verb}"
            return ret
        __salt__["consul_acl.policy_set"](name, rules, description)
        ret["comment"] = f"policy {name} {verb}"
    except CommandExecutionError as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = f"policy {name}: {exc}"
    return ret


def token_present(name: str, secret_id: str, policies: list[str], description: str = ""):
    """The token with ``secret_id`` (generated on the master) exists, linked to ``policies``.
    ``name`` labels the token; the secret never appears in the state's output.

    SLS Example:

    .. code-block:: yaml

        consul-token-lb:
          consul_acl.token_present:
            - name: lb
            - secret_id: {{ pillar.consul.acl.tokens.lb }}
            - policies: [lb]
    """
    ret = _ret(name)
    if not secret_id or not policies:
        ret["result"] = False
        ret["comment"] = f"token {name!r}: secret_id and policies are required"
        return ret
    if __opts__["test"] and not __salt__["consul_acl.reachable"]():
        ret["result"] = None
        ret["comment"] = f"Consul is not running yet; token {name} would be created"
        return ret
    try:
        current = __salt__["consul_acl.token"](secret_id)
        have = sorted(p["Name"] for p in (current or {}).get("Policies") or [])
        if current and have == sorted(policies):
            ret["comment"] = f"token {name} exists with policies {have}"
            return ret
        verb = "created" if current is None else "relinked"
        ret["changes"] = {"token": name, "policies": {"old": have, "new": sorted(policies)}}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"token {name} would be {verb}"
            return ret
        __salt__["consul_acl.token_set"](secret_id, list(policies), description or name)
        ret["comment"] = f"token {name} {verb}"
    except CommandExecutionError as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = f"token {name}: {exc}"
    return ret
