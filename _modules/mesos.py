"""
Mesos agent maintenance (drain, down, up) through saltyard's Mesos master client, and waiting for
Marathon to move the tasks away.

Configuration (pillar or minion config, read with ``config.get``)::

    mesos:
      operator_api:
        url: http://mesos-master.service:5050   # default: the inventory's first mesos-master
        username: ops                            # optional HTTP basic auth
        password: secret

In the local cluster the Marathon-API emulator answers the maintenance endpoints (it plays
Mesos's part), so its pillar points ``url`` at the emulator.
"""

from __future__ import annotations

import time
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard.clients import mesos as mesos_client

    HAS_SALTYARD = True
except ImportError:
    HAS_SALTYARD = False

__virtualname__ = "mesos"


def __virtual__():
    if not HAS_SALTYARD:
        return (False, "mesos: the saltyard package (saltyard.clients.mesos) is not importable")
    return __virtualname__


def _client() -> mesos_client.MesosMasterClient:
    settings = __salt__["config.get"]("mesos:operator_api", {}) or {}
    url = settings.get("url")
    if not url:
        masters = __salt__["config.get"]("saltyard:members:mesos-master", []) or []
        if not masters:
            raise CommandExecutionError("no Mesos master URL: set mesos:operator_api:url in pillar")
        url = f"http://{masters[0]['address']}:5050"
    auth = None
    if settings.get("username"):
        auth = (settings["username"], settings.get("password") or "")
    return mesos_client.MesosMasterClient(url, auth=auth, verify=settings.get("verify", True))


def _agent(host: str) -> str:
    agents = [a["name"] for a in __salt__["config.get"]("saltyard:members:mesos-agent", []) or []]
    if agents and host not in agents:
        raise CommandExecutionError(
            f"{host!r} is not a mesos-agent in the inventory (agents: {', '.join(agents)})"
        )
    return host


def _call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except mesos_client.MesosError as exc:
        raise CommandExecutionError(str(exc)) from exc


def maintenance_status() -> dict[str, Any]:
    """
    Machines DRAINING and DOWN.

    CLI Example:

    .. code-block:: bash

        salt control1 mesos.maintenance_status
    """
    return _call(_client().status)


def drain(host: str, timeout: float = 300) -> dict[str, Any]:
    """
    Take agent ``host`` out of service: schedule it for maintenance, bring it DOWN (its tasks are
    killed and Marathon replaces them elsewhere), and wait until Marathon runs none of its tasks
    there. Apps that could not be placed elsewhere (constraints) are reported, not waited for:
    they come back when the agent is up.

    CLI Example:

    .. code-block:: bash

        salt control1 mesos.drain agent-fat
    """
    host = _agent(host)
    client = _client()
    before = [t for t in __salt__["marathon.tasks"]() if t.get("host") == host]
    if not _call(client.is_down, host):
        _call(client.schedule_machine, host)
        _call(client.down, host)
    deadline = time.monotonic() + float(timeout)
    while True:
        left = [t for t in __salt__["marathon.tasks"]() if t.get("host") == host]
        if not left:
            break
        if time.monotonic() > deadline:
            raise CommandExecutionError(
                f"{host} is DOWN but Marathon still lists {len(left)} task(s) on it after "
                f"{timeout:.0f}s: {', '.join(t['id'] for t in left)}"
            )
        time.sleep(1)
    short = []
    for app_id in sorted({t["appId"] for t in before}):
        app = __salt__["marathon.app"](app_id)
        if app.get("tasksRunning", 0) < app.get("instances", 0):
            short.append(f"{app_id} ({app.get('tasksRunning', 0)}/{app.get('instances', 0)})")
    return {
        "host": host,
        "down": True,
        "tasks_moved": len(before),
        "apps_without_capacity": short,
    }


def up(host: str) -> bool:
    """
    Bring agent ``host`` back (it leaves the maintenance schedule); True if it was DOWN.

    CLI Example:

    .. code-block:: bash

        salt control1 mesos.up agent-fat
    """
    host = _agent(host)
    client = _client()
    if not _call(client.is_down, host):
        return False
    _call(client.up, host)
    return True
