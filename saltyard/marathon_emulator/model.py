"""The emulator's data: task states, tasks with their health, deployments, and the API error.

Plain data; the one lock that guards it is the Emulator's (``core.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGING, RUNNING, KILLING = "TASK_STAGING", "TASK_RUNNING", "TASK_KILLING"
CONDITIONS = {
    "TASK_STAGING": "Staging",
    "TASK_RUNNING": "Running",
    "TASK_KILLING": "Killing",
    "TASK_KILLED": "Killed",
    "TASK_FAILED": "Failed",
    "TASK_FINISHED": "Finished",
    "TASK_LOST": "Gone",
}


class ApiError(Exception):
    def __init__(self, status: int, body: dict | None):
        super().__init__(body.get("message") if body else str(status))
        self.status = status
        self.body = body


def not_found_app(app_id: str) -> ApiError:
    return ApiError(404, {"message": f"App '{app_id}' does not exist"})


@dataclass
class HealthState:
    alive: bool | None = None
    consecutive_failures: int = 0
    first_success: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    last_failure_cause: str | None = None
    next_due: float = 0.0
    inflight: bool = False


@dataclass
class Task:
    id: str
    app_id: str
    agent: str
    version: str
    config_version: str
    # The host ports the task got, as Marathon shows them (``ports``): only those of port
    # definitions and of port mappings with a host port.
    ports: list[int]
    # Per port mapping (or definition), by index: the port inside the container.
    container_ports: list[int]
    service_ports: list[int]
    staged_at: str
    state: str = STAGING
    started_at: str | None = None
    started_mono: float = 0.0
    launched_mono: float = 0.0
    container_id: str | None = None
    # The container's addresses (``ipAddresses``): on its container networks, in the app's
    # ``networks`` order; else on Docker's default bridge. Empty on host networking.
    ips: list[str] = field(default_factory=list)
    launching: bool = True
    killing: bool = False
    health: list[HealthState] = field(default_factory=list)
    # Per port mapping (or definition), by index: its host port, or None for a mapping without
    # one (container networks). Empty: one per entry of ``ports`` (tasks adopted from an
    # emulator that did not record it had a host port for every mapping).
    host_ports_by_index: list[int | None] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return not self.killing

    @property
    def slots(self) -> list[int | None]:
        """The host port of each port mapping or definition, by index (None: none)."""
        return list(self.host_ports_by_index) if self.host_ports_by_index else list(self.ports)


@dataclass
class Deployment:
    id: str
    version: str
    app_id: str
    steps: list[list[str]]
    original: dict | None
    target: dict | None
    kill_first: set[str] = field(default_factory=set)
    current_step: int = 1

    def to_json(self) -> dict:
        step = self.steps[min(self.current_step, len(self.steps)) - 1] if self.steps else []
        return {
            "id": self.id,
            "version": self.version,
            "affectedApps": [self.app_id],
            "affectedPods": [],
            "steps": [
                {"actions": [{"action": a, "app": self.app_id} for a in s]} for s in self.steps
            ],
            "currentActions": [
                {"action": a, "app": self.app_id, "readinessCheckResults": []} for a in step
            ],
            "currentStep": self.current_step,
            "totalSteps": len(self.steps),
        }

    def persist(self) -> dict:
        return {
            "id": self.id,
            "version": self.version,
            "app_id": self.app_id,
            "steps": self.steps,
            "original": self.original,
            "target": self.target,
            "kill_first": sorted(self.kill_first),
            "current_step": self.current_step,
        }

    @classmethod
    def restore(cls, data: dict) -> Deployment:
        return cls(
            id=data["id"],
            version=data["version"],
            app_id=data["app_id"],
            steps=data["steps"],
            original=data["original"],
            target=data["target"],
            kill_first=set(data.get("kill_first", [])),
            current_step=data.get("current_step", 1),
        )


def _true(value: str | None) -> bool:
    return str(value).lower() in ("true", "1", "yes")
