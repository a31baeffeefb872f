"""Drain a Mesos agent: move its Marathon tasks elsewhere one at a time, never below an app's
healthy capacity, and only then bring the machine DOWN.

1. Refuse, before anything changes, when some app on the agent has nowhere else to go (no other
   agent outside maintenance is of a role the app accepts and meets its constraints, free
   resources or fixed host ports), unless the caller accepts that app's downtime
   (``accept_downtime``).
2. Schedule maintenance: the agent is DRAINING and Marathon (maintenance mode) places nothing new
   there.
3. For each task there, one at a time: when the app can lose an instance and stay at its healthy
   capacity (``ceil(instances x upgradeStrategy.minimumHealthCapacity)``), kill it with
   ``scale=false`` and wait until Marathon's replacement runs, healthy, on another agent. When it
   cannot, start one first: scale the app to one more instance (within its
   ``maximumOverCapacity``), wait for that instance to be healthy elsewhere, then kill the old
   task with ``scale=false`` (its replacement is the next task's extra instance) or, for the app's
   last task here, ``scale=true`` (back to its instance count). An app whose upgradeStrategy allows
   no extra instance moves kill-first, as Marathon's own upgrades of it do.
4. Bring the machine DOWN once it runs none of the tasks it could hand over; Mesos kills what is
   left there (only tasks of apps whose downtime was accepted).

Idempotent: an agent already DOWN changes nothing; one already DRAINING continues where it
stands. The apps scaled up by one for the drain are written to a ledger file (``ledger_path``)
before the scale, so a re-run after a crash knows their real instance count.

Only saltyard's clients talk to Marathon and Mesos; the decisions (``nowhere_to_go``,
``capacity_plan``) are pure functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saltyard.clients.marathon import MarathonClient, MarathonError
from saltyard.clients.mesos import MesosError, MesosMasterClient
from saltyard.marathon_constraints import (
    DEFAULT_ACCEPTED_ROLES,
    UNRESERVED,
    AgentInfo,
    accepts,
    constraint_allows,
)

log = logging.getLogger(__name__)

RESOURCES = ("cpus", "mem", "disk")


class DrainError(Exception):
    """The drain could not go on; the agent stays as it is (DRAINING, or untouched)."""


class DrainRefused(DrainError):
    """Refused before anything changed: some app on the agent has nowhere else to go."""

    def __init__(self, host: str, stranded: dict[str, str]):
        self.host = host
        self.stranded = dict(stranded)
        lines = "; ".join(f"{app}: {why}" for app, why in sorted(stranded.items()))
        super().__init__(
            f"refusing to drain {host}: its tasks of {len(stranded)} app(s) have nowhere else to "
            f"go, so draining would stop them ({lines}). Nothing was changed. Make room for them "
            "(another agent they may run on), or accept their downtime for this run "
            "(accept_downtime)."
        )


# ---------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class AgentView:
    """What a placement decision needs about one agent."""

    name: str
    attributes: dict[str, str]
    # cpus/mem/disk not in use; None when the master reports none (the emulator accounts none).
    free: dict[str, float] | None = None
    in_maintenance: bool = False
    ports_in_use: frozenset[int] = field(default_factory=frozenset)
    # The role its resources are reserved for (Mesos's static reservation); UNRESERVED if none.
    role: str = UNRESERVED

    @property
    def info(self) -> AgentInfo:
        return AgentInfo(self.name, dict(self.attributes), self.role)


def reserved_role(slave: dict) -> str:
    """The role an agent of ``/master/slaves`` is reserved for as a whole (``--default_role``),
    or UNRESERVED when it has unreserved resources (or reports no reservation). An agent
    reserved for several roles is shown as the first: Marathon registers with one role."""
    unreserved = slave.get("unreserved_resources")
    reserved = {r: v for r, v in (slave.get("reserved_resources") or {}).items() if v}
    if reserved and not unreserved:
        return sorted(reserved)[0]
    return UNRESERVED


def agent_views(
    slaves: Iterable[dict], in_maintenance: Iterable[str], apps: Iterable[dict]
) -> list[AgentView]:
    """AgentViews from the Mesos master's ``/master/slaves``, the machines in maintenance, and
    Marathon's apps with their tasks (``embed=apps.tasks``: the host ports they hold)."""
    maintenance = set(in_maintenance)
    ports: dict[str, set[int]] = {}
    for app in apps:
        for task in app.get("tasks") or []:
            ports.setdefault(task.get("host"), set()).update(task.get("ports") or [])
    views = []
    for slave in slaves:
        name = slave.get("hostname")
        if not name:
            continue
        total = slave.get("resources") or {}
        used = slave.get("used_resources") or {}
        free = None
        if any(isinstance(total.get(r), int | float) for r in RESOURCES):
            free = {r: float(total.get(r) or 0) - float(used.get(r) or 0) for r in RESOURCES}
        views.append(
            AgentView(
                name=name,
                # Mesos reports scalar attributes as numbers; constraints compare text.
                attributes={k: str(v) for k, v in (slave.get("attributes") or {}).items()},
                free=free,
                in_maintenance=name in maintenance or not slave.get("active", True),
                ports_in_use=frozenset(ports.get(name, ())),
                role=reserved_role(slave),
            )
        )
    return views


def fixed_host_ports(app: dict) -> set[int]:
    """The host ports the app asks for by number (an agent that holds one cannot take it)."""
    ports = set()
    for mapping in (app.get("container") or {}).get("portMappings") or []:
        if mapping.get("hostPort"):
            ports.add(int(mapping["hostPort"]))
    if app.get("requirePorts"):
        ports.update(int(d["port"]) for d in app.get("portDefinitions") or [] if d.get("port"))
    return ports


def is_healthy(task: dict, app: dict) -> bool:
    """Running, and passing every health check when the app has some."""
    if task.get("state", "TASK_RUNNING") != "TASK_RUNNING":
        return False
    if not app.get("healthChecks"):
        return True
    results = task.get("healthCheckResults") or []
    return bool(results) and all(r.get("alive") for r in results)


@dataclass(frozen=True)
class CapacityPlan:
    floor: int  # the healthy instances the app must keep: ceil(instances x mHC)
    start_first: bool  # start an extra instance before each kill
    note: str = ""


def capacity_plan(app: dict, healthy: int, instances: int | None = None) -> CapacityPlan:
    """How to move one of ``app``'s tasks without going below its healthy capacity, given the
    ``healthy`` instances it has now. ``instances`` overrides the app's count (a drain that has
    already scaled it up by one passes the real count)."""
    count = app.get("instances", 1) if instances is None else instances
    strategy = app.get("upgradeStrategy") or {}
    mhc = float(strategy.get("minimumHealthCapacity", 1.0))
    moc = float(strategy.get("maximumOverCapacity", 1.0))
    floor = math.ceil(count * mhc - 1e-9)
    if healthy - 1 >= floor:
        return CapacityPlan(floor, start_first=False)
    if math.floor(count * (1 + moc) + 1e-9) >= count + 1:
        return CapacityPlan(floor, start_first=True)
    return CapacityPlan(
        floor,
        start_first=False,
        note=(
            f"upgradeStrategy allows no instance over {count}: each task is killed before its "
            "replacement starts, as Marathon's own upgrades of this app do"
        ),
    )


def _constraint_text(constraints: list) -> str:
    return json.dumps(constraints) if constraints else "none"


def accepted_roles(app: dict, default_roles: Iterable[str] = DEFAULT_ACCEPTED_ROLES) -> list[str]:
    """The roles an app's tasks may run on: its acceptedResourceRoles, or Marathon's default."""
    return sorted(app.get("acceptedResourceRoles") or default_roles)


def _why_no_agent(
    app: dict, candidates: list[AgentView], placed: list[AgentInfo], roles: list[str]
) -> str:
    if not candidates:
        return "no other agent is outside maintenance"
    reserved = [a for a in candidates if not accepts(roles, a.info)]
    usable = [a for a in candidates if accepts(roles, a.info)]
    described = ", ".join(f"{a.name} (role {a.role})" for a in reserved)
    if not usable:
        return (
            f"it accepts resources of roles {roles} only, and no other agent outside "
            f"maintenance has them (the others: {described})"
        )
    why = _why_not_these(app, usable, placed)
    if reserved:
        why += f"; it accepts resources of roles {roles} only, so not {described}"
    return why


def _why_not_these(app: dict, candidates: list[AgentView], placed: list[AgentInfo]) -> str:
    """Why none of ``candidates`` (agents of a role the app accepts) can take the task."""
    constraints = app.get("constraints") or []
    infos = [a.info for a in candidates]
    described = ", ".join(
        f"{a.name} ({','.join(f'{k}={v}' for k, v in sorted(a.attributes.items())) or '-'})"
        for a in candidates
    )
    static = [
        a for a in candidates if all(constraint_allows(c, a.info, infos, []) for c in constraints)
    ]
    if not static:
        return (
            f"no other agent outside maintenance meets its constraints "
            f"{_constraint_text(constraints)} (the others: {described})"
        )
    placed_ok = [
        a for a in static if all(constraint_allows(c, a.info, infos, placed) for c in constraints)
    ]
    if not placed_ok:
        return (
            f"its constraints {_constraint_text(constraints)} allow no more of its instances on "
            f"{', '.join(a.name for a in static)} (they already run theirs)"
        )
    ports = fixed_host_ports(app)
    reasons = []
    for agent in placed_ok:
        taken = sorted(ports & agent.ports_in_use)
        if taken:
            reasons.append(f"{agent.name} already uses host port(s) {taken}")
            continue
        short = [
            f"{r} {agent.free[r]:g} free < {float(app.get(r) or 0):g}"
            for r in RESOURCES
            if agent.free is not None and float(app.get(r) or 0) > agent.free[r] + 1e-9
        ]
        if short:
            reasons.append(f"{agent.name} lacks resources ({', '.join(short)})")
    return "; ".join(reasons) or "no agent can take it"


def nowhere_to_go(
    host: str,
    apps: Iterable[dict],
    agents: list[AgentView],
    default_roles: Iterable[str] = DEFAULT_ACCEPTED_ROLES,
) -> dict[str, str]:
    """The apps with tasks on ``host`` that could not all be placed elsewhere, with why: for
    each such task in turn, an agent other than ``host`` and outside maintenance, of a role the
    app accepts (its acceptedResourceRoles, or ``default_roles``: Marathon's
    ``--default_accepted_resource_roles``), that meets the app's constraints (given where its
    other instances run, the old task included while it runs beside an extra instance), has the
    free cpus/mem/disk (when the master reports them) and none of the app's fixed host ports in
    use. Placements are simulated in order, like Marathon's
    (the agent with the fewest of the app's instances), so several tasks that would crowd one
    agent count against it. Returns ``{app_id: reason}``; empty when the drain can go ahead.
    """
    by_name = {a.name: a for a in agents}
    candidates = [a for a in agents if a.name != host and not a.in_maintenance]
    free = {a.name: dict(a.free) if a.free is not None else None for a in candidates}
    ports = {a.name: set(a.ports_in_use) for a in candidates}
    stranded: dict[str, str] = {}
    for app in sorted(apps, key=lambda a: a.get("id", "")):
        tasks = app.get("tasks") or []
        here = [t for t in tasks if t.get("host") == host]
        if not here:
            continue
        constraints = app.get("constraints") or []
        roles = accepted_roles(app, default_roles)
        healthy = sum(1 for t in tasks if is_healthy(t, app))
        plan = capacity_plan(app, healthy)
        fixed = fixed_host_ports(app)

        def info(name: str) -> AgentInfo:
            agent = by_name.get(name)
            return agent.info if agent else AgentInfo(name, {})

        elsewhere = [info(t.get("host")) for t in tasks if t.get("host") != host]
        for moved in range(len(here)):
            still_here = len(here) - moved - (0 if plan.start_first else 1)
            placed = elsewhere + [info(host)] * still_here
            infos = [a.info for a in candidates]
            fits = []
            for agent in candidates:
                if not accepts(roles, agent.info):
                    continue
                if not all(constraint_allows(c, agent.info, infos, placed) for c in constraints):
                    continue
                if fixed & ports[agent.name]:
                    continue
                room = free[agent.name]
                if room is not None and any(
                    float(app.get(r) or 0) > room[r] + 1e-9 for r in RESOURCES
                ):
                    continue
                fits.append(agent)
            if not fits:
                view = [
                    AgentView(
                        a.name,
                        a.attributes,
                        free[a.name],
                        False,
                        frozenset(ports[a.name]),
                        a.role,
                    )
                    for a in candidates
                ]
                stranded[app.get("id", "?")] = _why_no_agent(app, view, placed, roles)
                break
            load = Counter(p.name for p in elsewhere)
            chosen = min(fits, key=lambda a: (load[a.name], a.name))
            elsewhere.append(chosen.info)
            ports[chosen.name] |= fixed
            if free[chosen.name] is not None:
                for r in RESOURCES:
                    free[chosen.name][r] -= float(app.get(r) or 0)
    return stranded


# ---------------------------------------------------------------------- the drain


class Ledger:
    """The apps a drain has scaled up by one, with their real instance count: written before the
    scale, removed once the app is back, so that a re-run after a crash does not take the extra
    instance for the app's own. Without a path it lives in memory only."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, int] = {}
        if self.path and self.path.exists():
            self.entries = {k: int(v) for k, v in json.loads(self.path.read_text()).items()}

    def _write(self) -> None:
        if not self.path:
            return
        if not self.entries:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(self.entries, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def get(self, app_id: str) -> int | None:
        return self.entries.get(app_id)

    def record(self, app_id: str, instances: int) -> None:
        self.entries[app_id] = instances
        self._write()

    def forget(self, app_id: str) -> None:
        if self.entries.pop(app_id, None) is not None:
            self._write()


@dataclass
class Drain:
    """One drain of ``host``; ``run()`` does it and returns the report."""

    marathon: MarathonClient
    mesos: MesosMasterClient
    host: str
    accept_downtime: bool = False
    task_timeout: float = 300.0
    interval: float = 1.0
    ledger_path: str | os.PathLike | None = None
    progress: Callable[[dict], None] | None = None
    # Marathon's --default_accepted_resource_roles: where apps without acceptedResourceRoles run.
    default_roles: tuple[str, ...] = DEFAULT_ACCEPTED_ROLES
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    moved: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------------ helpers

    def _apps(self) -> list[dict]:
        return self.marathon.list_apps(embed=["tasks"])

    def _app(self, app_id: str) -> dict:
        app = self.marathon.get_app(app_id)
        # GET /v2/apps/{id} embeds the tasks; read them separately when it does not.
        if "tasks" not in app:
            app["tasks"] = self.marathon.list_tasks(app_id)
        return app

    def _here(self, app: dict) -> list[dict]:
        return [t for t in app.get("tasks") or [] if t.get("host") == self.host]

    def _wait(self, what: str, app_id: str, check: Callable[[dict], Any]) -> Any:
        """Poll the app until ``check(app)`` returns something true; DrainError on timeout."""
        deadline = self.clock() + self.task_timeout
        while True:
            app = self._app(app_id)
            found = check(app)
            if found:
                return found
            if self.clock() >= deadline:
                failure = app.get("lastTaskFailure") or {}
                last = (
                    f"; last task failure on {failure.get('host')}: {failure.get('message')}"
                    if failure
                    else ""
                )
                raise DrainError(
                    f"drain of {self.host}: {app_id}: {what} not done after "
                    f"{self.task_timeout:g}s ({app.get('tasksRunning')} running, "
                    f"{app.get('tasksHealthy')} healthy of {app.get('instances')}{last}). "
                    f"{self.host} stays DRAINING; a re-run continues from here."
                )
            self.sleep(self.interval)

    def _check_not_placed_here(self, app: dict, known: set[str]) -> None:
        for task in self._here(app):
            if task["id"] not in known:
                raise DrainError(
                    f"drain of {self.host}: Marathon started {task['id']} on {self.host} while "
                    "it is in maintenance: Marathon's maintenance mode must be on (it is by "
                    "default since 1.7; --disable_maintenance_mode turns it off). "
                    f"{self.host} stays DRAINING."
                )

    def _report(self, entry: dict) -> None:
        self.moved.append(entry)
        log.info(
            "drain %s: %s %s -> %s on %s in %.1fs (%s)",
            self.host,
            entry["app"],
            entry["task"],
            entry["replaced_by"],
            entry["to"],
            entry["seconds"],
            entry["how"],
        )
        if self.progress:
            self.progress(dict(entry))

    def _wait_no_deployment(self, app_id: str) -> None:
        # A deployment in progress (a release, a scale) owns the app's instance count: moving
        # tasks under it would fight it, so the drain waits for it to end.
        self._wait("its deployment to end", app_id, lambda a: not a.get("deployments"))

    # ------------------------------------------------------------------ moving one app

    def _move_app(self, app_id: str) -> None:
        self._wait_no_deployment(app_id)
        app = self._app(app_id)
        here = self._here(app)
        ledger = Ledger(self.ledger_path)
        real = ledger.get(app_id)
        if not here:
            if real is not None and app["instances"] == real:
                ledger.forget(app_id)  # a run that stopped just after its last kill
            return
        known = {t["id"] for t in app.get("tasks") or []}
        count = real if real is not None else app["instances"]
        healthy = sum(1 for t in app["tasks"] if is_healthy(t, app))
        plan = capacity_plan(app, healthy, instances=count)
        start_first = plan.start_first or real is not None
        if plan.note:
            log.warning("drain %s: %s: %s", self.host, app_id, plan.note)
        attributed: set[str] = set()

        def new_healthy(a: dict) -> dict | None:
            self._check_not_placed_here(a, known)
            fresh = [
                t
                for t in a.get("tasks") or []
                if t["id"] not in known | attributed
                and t.get("host") != self.host
                and is_healthy(t, a)
            ]
            return min(fresh, key=lambda t: t.get("startedAt") or "") if fresh else None

        def covered(task_id: str) -> Callable[[dict], dict | None]:
            # Counted, not tracked by id: a re-run finds the extra instance among the tasks it
            # already knows. Found when the app keeps its healthy floor without ``task_id``.
            def check(a: dict) -> dict | None:
                self._check_not_placed_here(a, known)
                tasks = a.get("tasks") or []
                if sum(1 for t in tasks if t["id"] != task_id and is_healthy(t, a)) < plan.floor:
                    return None
                away = [
                    t
                    for t in tasks
                    if t.get("host") != self.host and is_healthy(t, a) and t["id"] not in attributed
                ]
                # The newest healthy instance elsewhere is the one that takes this task's place.
                away.sort(key=lambda t: (t["id"] not in known, t.get("startedAt") or ""))
                return away[-1] if away else {"id": None, "host": None}

            return check

        def gone(task_id: str) -> Callable[[dict], bool]:
            return lambda a: all(t["id"] != task_id for t in a.get("tasks") or [])

        if start_first and app["instances"] < count + 1:
            # Written before the scale: a crash after it must not leave the extra instance
            # looking like one of the app's own to the next run.
            ledger.record(app_id, count)
            log.info(
                "drain %s: %s scaled to %d to move without losing capacity",
                self.host,
                app_id,
                count + 1,
            )
            self.marathon.scale_app(app_id, count + 1)
        elif start_first:
            ledger.record(app_id, count)
        for index, task in enumerate(here):
            started = self.clock()
            last = index == len(here) - 1
            if start_first:
                extra = self._wait(
                    f"an extra healthy instance before {task['id']} is killed",
                    app_id,
                    covered(task["id"]),
                )
                attributed.add(extra["id"])
                if last:
                    # scale=true writes the instance count: the scale-up must have finished.
                    self._wait_no_deployment(app_id)
                # The last task goes with scale=true: the app is back at its own count.
                self.marathon.kill_task(app_id, task["id"], scale=last)
                self._wait(f"{task['id']} to be gone", app_id, gone(task["id"]))
                if last:
                    self._wait_no_deployment(app_id)
                    ledger.forget(app_id)
                how = "replacement started first"
            else:
                self.marathon.kill_task(app_id, task["id"], scale=False)
                extra = self._wait(f"a healthy replacement of {task['id']}", app_id, new_healthy)
                attributed.add(extra["id"])
                self._wait(f"{task['id']} to be gone", app_id, gone(task["id"]))
                how = "killed first" + (f" ({plan.note})" if plan.note else "")
            self._report(
                {
                    "app": app_id,
                    "task": task["id"],
                    "from": self.host,
                    "replaced_by": extra["id"],
                    "to": extra.get("host"),
                    "seconds": round(self.clock() - started, 1),
                    "how": how,
                }
            )

    # ------------------------------------------------------------------ the whole drain

    def check(self) -> dict:
        """What a drain would do, changing nothing: ``mode``, ``move`` (the apps whose tasks on
        the agent would move) and ``stop`` (``{app: why}``: the apps whose tasks have nowhere
        else to go). Raises DrainRefused when ``stop`` is not empty and downtime is not
        accepted; DrainError when the agent is not one the Mesos master knows."""
        try:
            mode = self.mesos.mode(self.host)
            if mode == "DOWN":
                return {"host": self.host, "mode": "DOWN", "move": [], "stop": {}, "apps": []}
            slaves = self.mesos.agents()
            if mode == "UP" and self.host not in {s.get("hostname") for s in slaves}:
                raise DrainError(f"{self.host} is not an agent the Mesos master knows")
            status = self.mesos.status()
            in_maintenance = {m.get("hostname") for m in status.get("down_machines", [])} | {
                (m.get("id") or {}).get("hostname") for m in status.get("draining_machines", [])
            }
            apps = self._apps()
        except (MarathonError, MesosError) as exc:
            raise DrainError(f"drain of {self.host}: {exc}") from exc
        stranded = nowhere_to_go(
            self.host, apps, agent_views(slaves, in_maintenance, apps), self.default_roles
        )
        if stranded and not self.accept_downtime:
            raise DrainRefused(self.host, stranded)
        move = sorted(a["id"] for a in apps if self._here(a) and a["id"] not in stranded)
        return {"host": self.host, "mode": mode, "move": move, "stop": stranded, "apps": apps}

    def run(self) -> dict:
        began = self.clock()
        plan = self.check()
        mode, stranded = plan["mode"], plan["stop"]
        if mode == "DOWN":
            return {
                "host": self.host,
                "changed": False,
                "mode": "DOWN",
                "moved": [],
                "stopped": [],
                "comment": f"{self.host} is already DOWN: nothing to drain",
            }
        try:
            for app_id, why in sorted(stranded.items()):
                log.warning(
                    "drain %s: %s has nowhere to go (%s); its downtime is accepted: its tasks "
                    "stop when the agent goes DOWN",
                    self.host,
                    app_id,
                    why,
                )
            scheduled = False
            if mode == "UP":
                scheduled = self.mesos.schedule_machine(self.host)
            for app_id in plan["move"]:
                self._move_app(app_id)
            left = [t["id"] for a in self._apps() if a["id"] not in stranded for t in self._here(a)]
            if left:
                raise DrainError(
                    f"drain of {self.host}: tasks still there after moving: {', '.join(left)}; "
                    f"{self.host} stays DRAINING, a re-run continues"
                )
            stopped = [t["id"] for a in self._apps() if a["id"] in stranded for t in self._here(a)]
            self.mesos.down(self.host)
            if stopped:
                self._wait_tasks_gone()
        except (MarathonError, MesosError) as exc:
            raise DrainError(f"drain of {self.host}: {exc}") from exc
        return {
            "host": self.host,
            "changed": True,
            "mode": "DOWN",
            "scheduled": scheduled,
            "moved": self.moved,
            "stopped": stopped,
            "downtime_accepted": stranded,
            "seconds": round(self.clock() - began, 1),
            "comment": (
                f"{self.host} drained: {len(self.moved)} task(s) moved"
                + (f", {len(stopped)} stopped (downtime accepted)" if stopped else "")
                + ", machine DOWN"
            ),
        }

    def _wait_tasks_gone(self) -> None:
        deadline = self.clock() + self.task_timeout
        while True:
            left = [t["id"] for t in self.marathon.list_tasks() if t.get("host") == self.host]
            if not left:
                return
            if self.clock() >= deadline:
                raise DrainError(
                    f"{self.host} is DOWN but Marathon still lists {len(left)} task(s) on it "
                    f"after {self.task_timeout:g}s: {', '.join(left)}"
                )
            self.sleep(self.interval)


def check_agent(
    marathon: MarathonClient,
    mesos: MesosMasterClient,
    host: str,
    *,
    accept_downtime: bool = False,
    default_roles: tuple[str, ...] = DEFAULT_ACCEPTED_ROLES,
) -> dict:
    """What draining ``host`` would do, changing nothing (Drain.check): ``mode``, ``move`` and
    ``stop``. Raises DrainRefused as the drain itself would, before it changed anything."""
    plan = Drain(
        marathon, mesos, host, accept_downtime=accept_downtime, default_roles=tuple(default_roles)
    ).check()
    plan.pop("apps")
    return plan


def drain_agent(
    marathon: MarathonClient,
    mesos: MesosMasterClient,
    host: str,
    *,
    accept_downtime: bool = False,
    task_timeout: float = 300.0,
    interval: float = 1.0,
    ledger_path: str | os.PathLike | None = None,
    progress: Callable[[dict], None] | None = None,
    default_roles: tuple[str, ...] = DEFAULT_ACCEPTED_ROLES,
) -> dict:
    """Drain ``host`` (see the module's docstring); returns the report: ``moved`` (per task:
    app, task, replaced_by, to, seconds, how), ``stopped`` (tasks of apps whose downtime was
    accepted), ``changed``, ``mode``. Raises DrainRefused before any change when tasks have
    nowhere to go and ``accept_downtime`` is false; DrainError when a step fails or times out.
    ``default_roles`` is Marathon's ``--default_accepted_resource_roles`` (``*`` only by
    default: an app without acceptedResourceRoles is then never moved to a reserved agent)."""
    return Drain(
        marathon,
        mesos,
        host,
        accept_downtime=accept_downtime,
        task_timeout=task_timeout,
        interval=interval,
        ledger_path=ledger_path,
        progress=progress,
        default_roles=tuple(default_roles),
    ).run()
