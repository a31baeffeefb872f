"""Health checks: scheduling them per task (under the Emulator's lock) and running the probes
in the probe pool (outside it), then recording the result and killing a task that failed too
often. Mixed into ``Emulator``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time

from . import appdef
from .agents import Agent
from .appdef import now_version
from .model import RUNNING, HealthState, Task


class HealthMixin:
    """Health check scheduling and probing. Methods use the Emulator's attributes
    (``self.lock``, ``self.apps``, ``self.tasks``, ...); none takes a lock of its own."""

    def _schedule_health(self, now: float) -> None:
        for task in self.tasks.values():
            if task.state != RUNNING or task.launching or task.killing:
                continue
            app = self._def_for(task)
            checks = (app or {}).get("healthChecks") or []
            while len(task.health) < len(checks):
                task.health.append(HealthState(next_due=now + 0.2))
            for i, hc in enumerate(checks):
                hs = task.health[i]
                if hs.inflight or now < hs.next_due:
                    continue
                hs.inflight = True
                hs.next_due = now + max(0.2, hc.get("intervalSeconds", 60))
                agent = self.agents[task.agent]
                address, port = probe_target(task, hc, agent, app or {})
                self._probe_pool.submit(
                    self._run_probe, task.id, i, dict(hc), agent, address, port, task.container_id
                )

    def _run_probe(
        self, task_id: str, index: int, hc: dict, agent: Agent, address: str, port, cid
    ) -> None:
        try:
            ok, cause = probe(hc, agent, address, port, cid)
        except Exception as exc:
            ok, cause = False, f"probe error: {exc}"
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task.killing or index >= len(task.health):
                return
            hs = task.health[index]
            hs.inflight = False
            stamp = now_version()
            before = hs.alive
            if ok:
                hs.consecutive_failures = 0
                hs.last_success = stamp
                hs.first_success = hs.first_success or stamp
                hs.alive = True
                self.backoff.pop(task.app_id, None)
            else:
                hs.last_failure = stamp
                hs.last_failure_cause = cause
                grace = hc.get("gracePeriodSeconds", 300)
                if hs.first_success is None and time.monotonic() - task.started_mono < grace:
                    return  # failures inside the grace period are ignored
                hs.consecutive_failures += 1
                hs.alive = False
                self._publish_task_event(
                    "failed_health_check_event",
                    task,
                    healthCheck=hc,
                )
            if before != hs.alive:
                self._publish_task_event(
                    "health_status_changed_event",
                    task,
                    alive=hs.alive,
                )
            limit = hc.get("maxConsecutiveFailures", 3)
            if not ok and limit and hs.consecutive_failures >= limit:
                reason = f"{hc.get('protocol')} health check failed {limit} times: {cause}"
                self._publish_task_event(
                    "unhealthy_task_kill_event",
                    task,
                    reason=reason,
                    host=task.agent,
                    slaveId=agent.slave_id,
                )
                self._record_failure(task, "TASK_KILLED", reason)
                self._kill(task, reason)


def probe_target(task: Task, hc: dict, agent: Agent, app: dict) -> tuple[str, int | None]:
    """Where a health check probes, as Marathon's port assignments say: the agent's address
    and the host port of the mapping at ``portIndex``; for a mapping without a host port (a
    container network) the task's own address and the container port. A fixed ``port`` is
    probed on the task's address on a container network, else on the agent's."""
    on_network = appdef.network_mode(app) == "container" and bool(task.ips)
    port = hc.get("port")
    if port is not None or hc.get("protocol") == "COMMAND":
        return (task.ips[0] if on_network else agent.address), port
    idx = hc.get("portIndex", 0)
    slots = task.slots
    if idx >= len(slots):
        return agent.address, None
    if slots[idx] is not None:
        return agent.address, slots[idx]
    if not task.ips:
        return agent.address, None  # no address (yet): the check fails
    return task.ips[0], task.container_ports[idx]


def probe(hc: dict, agent: Agent, address: str, port, container_id) -> tuple[bool, str]:
    """Run one health check on ``address:port``. HTTP(S) passes on 200-399 within the
    timeout."""
    protocol = hc.get("protocol", "HTTP")
    timeout = max(0.2, float(hc.get("timeoutSeconds", 20)))
    if protocol == "COMMAND":
        command = (hc.get("command") or {}).get("value", "")
        result = agent.client.containers.get(container_id).exec_run(["/bin/sh", "-c", command])
        return result.exit_code == 0, f"command exited with {result.exit_code}"
    if port is None:
        return False, "no port for the health check"
    if protocol in ("TCP", "MESOS_TCP"):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True, ""
        except OSError as exc:
            return False, f"TCP connect to {address}:{port} failed: {exc}"
    if protocol in ("HTTPS", "MESOS_HTTPS"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", hc.get("path") or "/")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {hc.get('path') or '/'} on {address}:{port} failed: {exc}"
    finally:
        conn.close()
    if 200 <= status < 400:
        return True, ""
    return False, f"GET {hc.get('path') or '/'} on {address}:{port} returned {status}"
