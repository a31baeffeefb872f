"""State: an IPVS virtual service and exactly its real servers (through the ``ipvs`` module).

For directors that are not run by keepalived (the registry VIP's director is: see states/lvs).
Named ``ipvs_service``, not ``lvs_service``, which is Salt's own state (up to 3007).
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "ipvs_service"

_SERVER_FIELDS = ("forwarding", "weight")


def __virtual__() -> str | tuple[bool, str]:
    if "ipvs.services" not in __salt__:
        return (False, "ipvs_service: the ipvs execution module is not available (ipvsadm?)")
    return __virtualname__


def _endpoint(server: dict) -> str:
    address = server["address"]
    return f"[{address}]:{server['port']}" if ":" in address else f"{address}:{server['port']}"


def _plan(current: dict | None, scheduler: str, desired: dict[str, dict]) -> dict[str, Any]:
    """What must change: the service itself, and real servers added, changed and removed."""
    changes: dict[str, Any] = {}
    if current is None:
        changes["service"] = {"old": None, "new": {"scheduler": scheduler}}
    elif current["scheduler"] != scheduler:
        changes["service"] = {
            "old": {"scheduler": current["scheduler"]},
            "new": {"scheduler": scheduler},
        }
    have = {_endpoint(s): s for s in (current or {}).get("servers", [])}
    added = [desired[k] for k in desired if k not in have]
    removed = [have[k] for k in have if k not in desired]
    changed = []
    for key in desired:
        if key in have:
            old = {f: have[key][f] for f in _SERVER_FIELDS}
            new = {f: desired[key][f] for f in _SERVER_FIELDS}
            if old != new:
                changed.append({"server": key, "old": old, "new": new})
    servers = {"added": added, "changed": changed, "removed": removed}
    if any(servers.values()):
        changes["servers"] = servers
    return changes


def _summary(changes: dict) -> str:
    parts = []
    if "service" in changes:
        parts.append(
            "service added"
            if changes["service"]["old"] is None
            else f"scheduler {changes['service']['old']['scheduler']} -> "
            f"{changes['service']['new']['scheduler']}"
        )
    servers = changes.get("servers", {})
    for what in ("added", "changed", "removed"):
        items = servers.get(what) or []
        if items:
            names = [i["server"] if "server" in i else _endpoint(i) for i in items]
            parts.append(f"real servers {what}: {', '.join(names)}")
    return "; ".join(parts)


def present(
    name: str,
    address: str,
    port: int,
    protocol: str = "tcp",
    scheduler: str = "wlc",
    servers: list[dict] | None = None,
):
    """The virtual service ``protocol address:port`` with ``scheduler`` and exactly ``servers``
    (real servers not listed are removed).

    Each server: ``address``, and optionally ``port`` (the service's; only ``nat`` may differ),
    ``weight`` (default 1; 0 keeps it without sending it new connections) and ``forwarding``
    (``dr``, the default, ``nat`` or ``tunnel``). Every value is checked before anything changes.
    In test mode the changes are predicted exactly and nothing is done.

    SLS Example:

    .. code-block:: yaml

        registry-vip:
          ipvs_service.present:
            - address: 172.30.0.200
            - port: 5000
            - scheduler: wlc
            - servers:
              - {address: 172.30.0.31, weight: 1}
              - {address: 172.30.0.32, weight: 1}
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": True, "comment": ""}
    check = __salt__
    try:
        protocol = check["ipvs.check_protocol"](protocol)
        address = check["ipvs.check_address"](address, "service address")
        port = check["ipvs.check_port"](port, "service port")
        scheduler = check["ipvs.check_scheduler"](scheduler)
        if servers is not None and not isinstance(servers, list):
            raise SaltInvocationError(f"servers must be a list of mappings, got {servers!r}")
        desired: dict[str, dict] = {}
        for server in servers or []:
            checked = check["ipvs.check_server"](server, port)
            key = _endpoint(checked)
            if key in desired:
                raise SaltInvocationError(f"real server {key} is listed twice")
            desired[key] = checked
        current = __salt__["ipvs.service"](address, port, protocol)
    except (SaltInvocationError, CommandExecutionError) as exc:
        ret["result"] = False
        ret["comment"] = f"{protocol} {address}:{port}: {exc}"
        return ret

    service_name = f"{protocol} {_endpoint({'address': address, 'port': port})}"
    changes = _plan(current, scheduler, desired)
    if not changes:
        ret["comment"] = (
            f"virtual service {service_name} ({scheduler}) has its {len(desired)} real servers"
        )
        return ret
    ret["changes"] = changes
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"virtual service {service_name} would change: {_summary(changes)}"
        return ret

    try:
        if current is None:
            __salt__["ipvs.add_service"](address, port, protocol, scheduler)
        elif "service" in changes:
            # The state does not manage persistence: keep what the service has.
            __salt__["ipvs.edit_service"](
                address, port, protocol, scheduler, current.get("persistent")
            )
        servers_plan = changes.get("servers", {})
        for server in servers_plan.get("added", []):
            __salt__["ipvs.add_server"](
                address,
                port,
                server["address"],
                server["port"],
                protocol,
                server["forwarding"],
                server["weight"],
            )
        for change in servers_plan.get("changed", []):
            server = desired[change["server"]]
            __salt__["ipvs.edit_server"](
                address,
                port,
                server["address"],
                server["port"],
                protocol,
                server["forwarding"],
                server["weight"],
            )
        # Removed last, so that the service keeps its capacity while it changes.
        for server in servers_plan.get("removed", []):
            __salt__["ipvs.delete_server"](
                address, port, server["address"], server["port"], protocol
            )
        after = __salt__["ipvs.service"](address, port, protocol)
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = f"virtual service {service_name}: {exc}"
        return ret

    left = _plan(after, scheduler, desired)
    if left:
        ret["result"] = False
        ret["comment"] = (
            f"virtual service {service_name} still differs after the change: {_summary(left)}"
        )
        return ret
    ret["comment"] = f"virtual service {service_name} changed: {_summary(changes)}"
    return ret


def absent(name: str, address: str, port: int, protocol: str = "tcp"):
    """No virtual service ``protocol address:port`` (its real servers go with it).

    SLS Example:

    .. code-block:: yaml

        old-vip:
          ipvs_service.absent:
            - address: 172.30.0.201
            - port: 5000
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        protocol = __salt__["ipvs.check_protocol"](protocol)
        address = __salt__["ipvs.check_address"](address, "service address")
        port = __salt__["ipvs.check_port"](port, "service port")
        current = __salt__["ipvs.service"](address, port, protocol)
    except (SaltInvocationError, CommandExecutionError) as exc:
        ret["result"] = False
        ret["comment"] = f"{protocol} {address}:{port}: {exc}"
        return ret
    service_name = f"{protocol} {_endpoint({'address': address, 'port': port})}"
    if current is None:
        ret["comment"] = f"virtual service {service_name} is absent"
        return ret
    ret["changes"] = {"old": current, "new": None}
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"virtual service {service_name} would be deleted"
        return ret
    try:
        __salt__["ipvs.delete_service"](address, port, protocol)
        after = __salt__["ipvs.service"](address, port, protocol)
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = f"virtual service {service_name}: {exc}"
        return ret
    if after is not None:
        ret["result"] = False
        ret["comment"] = f"virtual service {service_name} is still in the table"
        return ret
    ret["comment"] = f"virtual service {service_name} deleted"
    return ret
