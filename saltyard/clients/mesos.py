"""The project's one client for the Mesos master's operator HTTP API: maintenance, and the agent
list (hostnames, attributes, resources) that maintenance decisions need.

The maintenance primitives: put the machine in the maintenance schedule (it is then DRAINING:
Marathon's maintenance mode declines its offers, so no new task lands there), bring it DOWN (Mesos
kills whatever still runs there), work on it, bring it UP (it leaves the schedule). Moving the
tasks away in between, without losing capacity, is ``saltyard.maintenance.drain``'s job. In the
local cluster the Marathon-API emulator answers these endpoints, since it plays Mesos's part in
running tasks.
"""

from __future__ import annotations

import time
from typing import Any

import requests

HOUR_NS = 3600 * 10**9


class MesosError(Exception):
    def __init__(self, message: str, *, status: int | None = None, url: str = ""):
        super().__init__(message)
        self.status = status
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.url}" + (f", HTTP {self.status})" if self.status else ")")
        return super().__str__() + (where if self.url else "")


class MesosMasterClient:
    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        verify: bool | str = True,
        timeout: float | tuple[float, float] = (3.05, 15.0),
    ):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if auth:
            self.session.auth = auth
        self.session.verify = verify
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise MesosError(f"no answer from the Mesos master: {exc}", url=url) from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text or response.reason
            raise MesosError(str(message).strip(), status=response.status_code, url=url)
        return response.json() if response.content else None

    @staticmethod
    def machine(hostname: str, ip: str | None = None) -> dict[str, str]:
        if not isinstance(hostname, str) or not hostname:
            raise MesosError(f"invalid machine hostname {hostname!r}")
        return {"hostname": hostname, **({"ip": ip} if ip else {})}

    def schedule(self) -> dict:
        return self._request("GET", "/master/maintenance/schedule") or {"windows": []}

    def status(self) -> dict:
        return self._request("GET", "/master/maintenance/status") or {}

    def agents(self) -> list[dict]:
        """``GET /master/slaves``: the registered agents (``hostname``, ``attributes``,
        ``resources``, ``used_resources``, ...), as the master reports them."""
        return (self._request("GET", "/master/slaves") or {}).get("slaves", [])

    def mode(self, hostname: str) -> str:
        """The machine's maintenance mode: ``UP`` (not scheduled), ``DRAINING`` or ``DOWN``."""
        status = self.status()
        if any(m.get("hostname") == hostname for m in status.get("down_machines", [])):
            return "DOWN"
        draining = status.get("draining_machines", [])
        if any((m.get("id") or {}).get("hostname") == hostname for m in draining):
            return "DRAINING"
        return "UP"

    def is_down(self, hostname: str) -> bool:
        return any(m.get("hostname") == hostname for m in self.status().get("down_machines", []))

    def schedule_machine(self, hostname: str, ip: str | None = None, hours: int = 1) -> bool:
        """Add the machine to the schedule (a window starting now); False if already there."""
        schedule = self.schedule()
        windows = schedule.get("windows", [])
        if any(m.get("hostname") == hostname for w in windows for m in w.get("machine_ids", [])):
            return False
        windows.append(
            {
                "machine_ids": [self.machine(hostname, ip)],
                "unavailability": {
                    "start": {"nanoseconds": time.time_ns()},
                    "duration": {"nanoseconds": hours * HOUR_NS},
                },
            }
        )
        self._request("POST", "/master/maintenance/schedule", {"windows": windows})
        return True

    def down(self, hostname: str, ip: str | None = None) -> None:
        self._request("POST", "/master/machine/down", [self.machine(hostname, ip)])

    def up(self, hostname: str, ip: str | None = None) -> None:
        self._request("POST", "/master/machine/up", [self.machine(hostname, ip)])
