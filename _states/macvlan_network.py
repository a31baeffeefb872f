"""State: a Docker macvlan network on this node's engine, with the settings given (the ipam
role's ``macvlan`` network, whose addresses the saltyard IPAM plugin hands out).

Docker cannot change a network in place: a network whose settings differ is removed and created
again, but only when no container is attached to it here; otherwise the state fails, names the
differences and the containers, and changes nothing."""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "macvlan_network"

# What is compared; ``id`` and ``containers`` are read, never configured.
COMPARED = ("driver", "options", "ipam_driver", "ipam_options", "ipam_config")


def __virtual__():
    if "macvlan_network.get" not in __salt__:
        return (False, "the macvlan_network execution module is not available")
    return __virtualname__


def _configured(settings: dict) -> dict[str, Any]:
    return {key: settings.get(key) for key in COMPARED}


def _diff(current: dict, desired: dict) -> str:
    return "; ".join(
        f"{key}: {current.get(key)} -> {desired.get(key)}"
        for key in COMPARED
        if current.get(key) != desired.get(key)
    )


def present(
    name: str,
    parent: str,
    subnet: str,
    gateway: str,
    ip_range: str | None = None,
    ipam_driver: str = "saltyard-ipam",
    ipam_options: dict | None = None,
    macvlan_mode: str = "bridge",
    plugin_socket: str | None = None,
    plugin_timeout: float = 30,
):
    """Docker network ``name`` exists with the macvlan driver on ``parent`` and IPAM driver
    ``ipam_driver`` (``ipam_options``; one IPv4 configuration of ``subnet``, ``gateway`` and
    ``ip_range``). A parent interface this node lacks is refused before anything changes.
    ``plugin_socket``: wait up to ``plugin_timeout`` seconds for the IPAM plugin's socket before
    creating (the engine asks the plugin at once).

    SLS Example:

    .. code-block:: yaml

        macvlan-network:
          macvlan_network.present:
            - name: macvlan
            - parent: eth0
            - subnet: 172.30.0.0/24
            - gateway: 172.30.0.1
            - ip_range: 172.30.0.224/28
            - ipam_driver: saltyard-ipam
            - ipam_options: {pool: tasks}
            - plugin_socket: /run/docker/plugins/saltyard-ipam.sock
    """
    try:
        return _present(
            name,
            parent,
            subnet,
            gateway,
            ip_range,
            ipam_driver,
            ipam_options,
            macvlan_mode,
            plugin_socket,
            plugin_timeout,
        )
    except CommandExecutionError as exc:
        # The engine's (or the IPAM plugin's) own message, which names the value it refused.
        return {"name": name, "changes": {}, "result": False, "comment": str(exc)}


def _present(
    name,
    parent,
    subnet,
    gateway,
    ip_range,
    ipam_driver,
    ipam_options,
    macvlan_mode,
    plugin_socket,
    plugin_timeout,
):
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    problem = __salt__["macvlan_network.interface_problem"](parent)
    if problem:
        ret["result"] = False
        ret["comment"] = f"refusing Docker network {name!r}: {problem}; nothing was changed"
        return ret
    desired = {
        "driver": "macvlan",
        "options": {"parent": str(parent), "macvlan_mode": str(macvlan_mode)},
        "ipam_driver": str(ipam_driver),
        "ipam_options": {str(k): str(v) for k, v in (ipam_options or {}).items()},
        "ipam_config": [
            {"subnet": str(subnet), "gateway": str(gateway), "ip_range": ip_range or None}
        ],
    }
    try:
        current = __salt__["macvlan_network.get"](name)
    except CommandExecutionError as exc:
        # On a new node in test mode the engine is not installed yet (the docker state would
        # install it first): the network would then be created.
        if not (__opts__["test"] and "the Docker engine does not answer" in str(exc)):
            raise
        ret["result"] = None
        ret["changes"] = {"old": None, "new": desired}
        ret["comment"] = (
            f"Docker network {name!r} would be created (the Docker engine does not answer "
            "yet; it is installed and started first)"
        )
        return ret
    if current is not None and _configured(current) == desired:
        ret["comment"] = f"Docker network {name!r} is as configured"
        return ret
    if current is not None:
        change = _diff(current, desired)
        if current["containers"]:
            ret["result"] = False
            ret["comment"] = (
                f"Docker network {name!r} differs from its configuration ({change}), and "
                f"containers are attached on this node ({', '.join(current['containers'])}): "
                "Docker cannot change a network in place, and re-creating it would cut them "
                "off. Move them away first (scale their apps down or drain the agent), then "
                "apply again; nothing was changed"
            )
            return ret
        ret["changes"] = {"old": _configured(current), "new": desired}
        action = f"re-created ({change})"
    else:
        ret["changes"] = {"old": None, "new": desired}
        action = "created"
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"Docker network {name!r} would be {action}"
        return ret
    if plugin_socket and not __salt__["macvlan_network.wait_for_plugin"](
        plugin_socket, plugin_timeout
    ):
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = (
            f"the IPAM plugin's socket {plugin_socket} did not appear within {plugin_timeout}s "
            f"(systemctl status saltyard-ipam); Docker network {name!r} was not {action}"
        )
        return ret
    if current is not None:
        __salt__["macvlan_network.remove"](name)
    try:
        created = __salt__["macvlan_network.create"](
            name,
            parent,
            subnet,
            gateway,
            ip_range=ip_range,
            ipam_driver=ipam_driver,
            ipam_options=desired["ipam_options"],
            macvlan_mode=macvlan_mode,
        )
    except CommandExecutionError as exc:
        ret["result"] = False
        if current is None:
            ret["changes"] = {}
            ret["comment"] = str(exc)
        else:
            # The old network is gone already: say so, the next run creates it.
            ret["changes"] = {"old": _configured(current), "new": None}
            ret["comment"] = f"Docker network {name!r} was removed to be re-created, but: {exc}"
        return ret
    if _configured(created) != desired:
        ret["result"] = False
        ret["comment"] = (
            f"Docker network {name!r} was {action} but reads back differently: "
            f"{_diff(created, desired)}"
        )
        return ret
    ret["comment"] = f"Docker network {name!r} {action}"
    return ret
