"""
Mesos agent maintenance (drain, up, status) through saltyard's Mesos master and Marathon clients.

``drain`` is a thin adapter over ``saltyard.maintenance.drain``: schedule maintenance, move the
agent's tasks elsewhere one at a time without going below each app's healthy capacity, then
bring the machine DOWN; refused before any change when tasks have nowhere else to go, unless
``accept_downtime=True``. Marathon is reached as the ``marathon_api`` module reaches it
(``marathon:url`` and credentials).

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

import os
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard.clients import marathon as marathon_client
    from saltyard.clients import mesos as mesos_client
    from saltyard.maintenance import drain as drain_logic

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


def _progress(host: str, step: dict[str, Any]) -> None:
    # Each task moved is an event on the master's bus, as the release workflow's steps are
    # (the package logs it too).
    send = __salt__.get("event.send")
    if send:
        send(f"saltyard/mesos/drain/{host}/moved", step)


def drain(host: str, accept_downtime: bool = False, timeout: float = 300) -> dict[str, Any]:
    """
    Drain agent ``host``: schedule it for maintenance (DRAINING: Marathon places nothing new
    there), move its Marathon tasks to other agents one at a time without going below each app's
    healthy capacity (a replacement runs healthy elsewhere before, or right after, each kill),
    then bring the machine DOWN. ``timeout`` bounds each task's move, in seconds.

    Refused before anything changes when some app's tasks have nowhere else to go (no other agent
    outside maintenance is of a role the app accepts, or meets its constraints, resources or
    fixed ports), naming the apps and why, unless ``accept_downtime=True``: then those tasks
    stop when the machine goes DOWN.

    An agent already DOWN: nothing changes (``changed`` False). One already DRAINING (an earlier
    drain that stopped): the drain continues. Returns the report: ``moved`` (per task: app, task,
    replaced_by, to, seconds, how), ``stopped``, ``changed``, ``mode``; each task moved is also
    sent to the master as the event ``saltyard/mesos/drain/<host>/moved``.

    CLI Example:

    .. code-block:: bash

        salt control1 mesos.drain agent-fat
        salt control1 mesos.drain agent-fat accept_downtime=True timeout=600
    """
    host = _agent(host)
    marathon, default_roles = _drain_inputs(accept_downtime)
    cachedir = (__opts__ or {}).get("cachedir")
    # Where the drain notes the apps it scaled up by one, so that a re-run after a crash knows
    # their own instance count.
    ledger = os.path.join(cachedir, "saltyard", f"drain-{host}.json") if cachedir else None
    try:
        return drain_logic.drain_agent(
            marathon,
            _client(),
            host,
            accept_downtime=bool(accept_downtime),
            task_timeout=float(timeout),
            ledger_path=ledger,
            progress=lambda step: _progress(host, step),
            default_roles=default_roles,
        )
    except drain_logic.DrainError as exc:
        raise CommandExecutionError(str(exc)) from exc


def drain_check(host: str, accept_downtime: bool = False) -> dict[str, Any]:
    """
    What ``mesos.drain`` would do to agent ``host``, changing nothing: ``mode`` (UP, DRAINING,
    DOWN), ``move`` (the apps whose tasks there it would move) and ``stop`` (``{app: why}``, the
    apps whose tasks have nowhere else to go). Refused, naming those apps, exactly as the drain
    would refuse them, unless ``accept_downtime=True``. ``orch.kernel_rollout`` plans with it,
    so that a run refuses before any node is touched.

    CLI Example:

    .. code-block:: bash

        salt control1 mesos.drain_check agent-vm
        salt control1 mesos.drain_check agent-vm accept_downtime=True
    """
    host = _agent(host)
    marathon, default_roles = _drain_inputs(accept_downtime)
    try:
        return drain_logic.check_agent(
            marathon,
            _client(),
            host,
            accept_downtime=bool(accept_downtime),
            default_roles=default_roles,
        )
    except drain_logic.DrainError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _drain_inputs(accept_downtime: Any) -> tuple[Any, tuple[str, ...]]:
    """The Marathon client and Marathon's default accepted roles, for a drain or its check."""
    # Accepting downtime stops applications: only a real boolean may do it, not a stray string.
    if accept_downtime not in (True, False):
        raise CommandExecutionError(f"accept_downtime={accept_downtime!r}: expected True or False")
    try:
        marathon = marathon_client.client_from_config(__salt__["config.get"])
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc
    # Where apps without acceptedResourceRoles may run: what Marathon is told (the marathon
    # role's pillar), else Marathon's own default, every role it is offered.
    default_roles = __salt__["config.get"]("marathon:default_accepted_resource_roles") or []
    if not default_roles:
        role = __salt__["config.get"]("marathon:mesos_role") or ""
        default_roles = ["*", role] if role else ["*"]
    return marathon, tuple(default_roles)


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
