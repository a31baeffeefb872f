"""Mesos maintenance, the master's operator API the emulator answers: the schedule (DRAINING
machines), machines DOWN and UP, and the agent list (``/master/slaves``) that tells operators'
tools each agent's attributes. No task is placed on an agent whose maintenance window has begun
(DRAINING, as Marathon's maintenance mode declines its offers) or that is DOWN; bringing one down
kills its tasks. Mixed into ``Emulator``: state and lock are the Emulator's.
"""

from __future__ import annotations

import copy
import time

from .model import ApiError
from .placement import UNRESERVED


class MaintenanceMixin:
    """Mesos maintenance endpoints (``/master/maintenance/*``, ``/master/machine/*``). Methods
    use the Emulator's attributes (``self.lock``, ``self.apps``, ``self.tasks``, ...); none takes
    a lock of its own."""

    def _scheduled(self) -> set[str]:
        return {
            m.get("hostname")
            for window in self.maintenance_windows
            for m in window.get("machine_ids", [])
        }

    def _unavailable(self) -> set[str]:
        """Agents no task may be placed on: DOWN, or in a window whose unavailability has begun.
        Marathon (maintenance mode, on by default since 1.7) declines offers that carry an
        unavailability starting before now + ``--draining_seconds`` (0 by default); a window
        that starts later leaves the agent usable until then."""
        now = time.time_ns()
        started = set()
        for window in self.maintenance_windows:
            start = ((window.get("unavailability") or {}).get("start") or {}).get("nanoseconds")
            if start is None or int(start) <= now:
                started.update(m.get("hostname") for m in window.get("machine_ids", []))
        return started | self.down_machines

    @staticmethod
    def _machine_names(machines: object, what: str) -> list[str]:
        if not isinstance(machines, list) or not machines:
            raise ApiError(400, {"message": f"{what}: expected a non-empty list of machine ids"})
        names = []
        for machine in machines:
            if not isinstance(machine, dict) or not machine.get("hostname"):
                raise ApiError(400, {"message": f"{what}: machine id {machine!r} has no hostname"})
            names.append(machine["hostname"])
        return names

    def maintenance_schedule(self) -> dict:
        with self.lock:
            return {"windows": copy.deepcopy(self.maintenance_windows)}

    def set_maintenance_schedule(self, schedule: object) -> None:
        if not isinstance(schedule, dict) or not isinstance(schedule.get("windows", []), list):
            raise ApiError(400, {"message": 'schedule: expected {"windows": [...]}'})
        windows = schedule.get("windows", [])
        listed = set()
        for window in windows:
            listed.update(self._machine_names(window.get("machine_ids"), "schedule window"))
        with self.lock:
            # As Mesos: a DOWN machine stays in the schedule until it is brought up.
            missing = self.down_machines - listed
            if missing:
                raise ApiError(
                    400,
                    {"message": f"Machine '{sorted(missing)[0]}' is DOWN and must stay scheduled"},
                )
            self.maintenance_windows = copy.deepcopy(windows)
            self._save()

    def machines_down(self, machines: object) -> None:
        names = self._machine_names(machines, "machine/down")
        with self.lock:
            for name in names:
                if name not in self._scheduled():
                    raise ApiError(400, {"message": f"Machine '{name}' is not in DRAINING mode"})
            self.down_machines.update(names)
            self._save()
            # As Mesos: the agent's tasks are killed; Marathon replaces them on other agents.
            for task in list(self.tasks.values()):
                if task.agent in names and task.alive:
                    self._kill(task, f"agent {task.agent} is DOWN for maintenance")

    def machines_up(self, machines: object) -> None:
        names = self._machine_names(machines, "machine/up")
        with self.lock:
            for name in names:
                if name not in self.down_machines:
                    raise ApiError(400, {"message": f"Machine '{name}' is not in DOWN mode"})
            self.down_machines.difference_update(names)
            for window in self.maintenance_windows:
                window["machine_ids"] = [
                    m for m in window.get("machine_ids", []) if m.get("hostname") not in names
                ]
            self.maintenance_windows = [w for w in self.maintenance_windows if w["machine_ids"]]
            self._save()

    def maintenance_status(self) -> dict:
        with self.lock:
            draining = sorted(self._scheduled() - self.down_machines)
            return {
                "draining_machines": [{"id": {"hostname": h}} for h in draining],
                "down_machines": [{"hostname": h} for h in sorted(self.down_machines)],
            }

    def agents_state(self) -> dict:
        """``GET /master/slaves`` in Mesos's shape, with what the emulator knows: hostname,
        attributes, the host-port range and the role it is reserved for (an agent reserved
        whole for one role, as ``--default_role`` does, has no unreserved resources). It
        accounts no cpus, mem or disk, so it reports none (a real master does; saltyard's drain
        then checks them)."""
        with self.lock:
            slaves = []
            for agent in self.agents.values():
                lo, hi = agent.port_range
                resources = {"ports": f"[{lo}-{hi}]"}
                reserved = agent.role != UNRESERVED
                slaves.append(
                    {
                        "id": agent.slave_id,
                        "hostname": agent.name,
                        "attributes": dict(agent.attributes),
                        "active": True,
                        "resources": resources,
                        "reserved_resources": {agent.role: resources} if reserved else {},
                        "unreserved_resources": {} if reserved else resources,
                    }
                )
            return {"slaves": slaves, "recovered_slaves": []}
