"""The emulator's state and scheduler: apps, versions, tasks (Docker containers), deployments,
health checks, backoff, persistence and adoption.

One lock guards all state. Docker calls and probes run in thread pools outside the lock; a
single loop thread ticks (default every 0.25 s) to sync containers, schedule health checks and
drive deployments. Everything the API changes is written to the state file (atomic replace).
"""

from __future__ import annotations

import concurrent.futures
import copy
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors

from saltyard import marathon_appdef

from . import appdef
from .agents import (
    LABEL,
    Agent,
    container_labels,
    container_state,
    describe_exit,
    docker_run_kwargs,
    image_registry,
)
from .appdef import ValidationFailed, now_version
from .events import EventBus
from .placement import eligible_agents, rolling_step

log = logging.getLogger("saltyard.marathon_emulator")

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
    ports: list[int]
    container_ports: list[int]
    service_ports: list[int]
    staged_at: str
    state: str = STAGING
    started_at: str | None = None
    started_mono: float = 0.0
    launched_mono: float = 0.0
    container_id: str | None = None
    ip: str | None = None
    launching: bool = True
    killing: bool = False
    health: list[HealthState] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return not self.killing


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


class Emulator:
    def __init__(
        self,
        agents: list[Agent],
        state_file: str | os.PathLike | None,
        cluster: str = "default",
        leader: str = "127.0.0.1:8080",
        default_image: str | None = None,
        use_init: bool = True,
        tick: float = 0.25,
        sync_interval: float = 1.0,
        kill_grace: float = 3.0,
        pull_from: tuple[str, ...] = (),
        pull_auth: dict[str, str] | None = None,
    ):
        if not agents:
            raise ValueError("at least one agent is needed")
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate agent names in {names}")
        self.agents = {a.name: a for a in agents}
        self.state_file = Path(state_file) if state_file else None
        self.cluster = cluster
        self.leader = leader
        self.default_image = default_image
        self.use_init = use_init
        self.tick_interval = tick
        self.sync_interval = sync_interval
        self.kill_grace = kill_grace
        self.pull_from = tuple(pull_from)
        # Mesos maintenance (the master's operator API): machines in the schedule are DRAINING,
        # machines brought down are DOWN: no task is placed on a DOWN agent.
        self.maintenance_windows: list[dict] = []
        self.down_machines: set[str] = set()
        self.pull_auth = pull_auth  # {"username", "password"} for the --pull-from registries
        self.lock = threading.RLock()
        self.events = EventBus()
        self.apps: dict[str, dict] = {}
        self.versions: dict[str, dict[str, dict]] = {}
        self.tasks: dict[str, Task] = {}
        self.deployments: dict[str, Deployment] = {}
        self.last_failure: dict[str, dict] = {}
        self.backoff: dict[str, list] = {}  # app id -> [consecutive failures, not before (mono)]
        self.unplaced: dict[str, str] = {}  # app id -> why the last launch found no agent
        self._gone: dict[str, float] = {}  # task ids removed recently (mono time)
        self._docker_pool = concurrent.futures.ThreadPoolExecutor(16, "docker")
        self._probe_pool = concurrent.futures.ThreadPoolExecutor(16, "probe")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sync = 0.0
        self.started_at = time.time()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._load()
        self._sync_all(adopt_unknown=True)
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling. Running tasks keep running (adopted again on the next start)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.events.close_all()
        self._docker_pool.shutdown(wait=False, cancel_futures=True)
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # keep scheduling whatever one tick hit
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_interval)

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_sync:
            self._next_sync = now + self.sync_interval
            self._sync_all(adopt_unknown=False)
        with self.lock:
            self._schedule_health(time.monotonic())
            for dep in list(self.deployments.values()):
                self._drive(dep)
            locked = {d.app_id for d in self.deployments.values()}
            for app_id, app in list(self.apps.items()):
                if app_id not in locked:
                    self._maintain(app)
            cutoff = time.monotonic() - 60
            self._gone = {k: v for k, v in self._gone.items() if v > cutoff}

    # ---------------------------------------------------------------- persistence

    def _load(self) -> None:
        if not self.state_file or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text())
        self.apps = data.get("apps", {})
        self.versions = data.get("versions", {})
        self.maintenance_windows = data.get("maintenance_windows", [])
        self.down_machines = set(data.get("down_machines", []))
        for d in data.get("deployments", []):
            dep = Deployment.restore(d)
            self.deployments[dep.id] = dep
        log.info(
            "loaded %d apps and %d deployments from %s",
            len(self.apps),
            len(self.deployments),
            self.state_file,
        )

    def _save(self) -> None:
        if not self.state_file:
            return
        data = {
            "format": 1,
            "cluster": self.cluster,
            "apps": self.apps,
            "versions": self.versions,
            "deployments": [d.persist() for d in self.deployments.values()],
            "maintenance_windows": self.maintenance_windows,
            "down_machines": sorted(self.down_machines),
        }
        directory = self.state_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self.state_file.name}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # ---------------------------------------------------------------- rendering

    def _app_tasks(self, app_id: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.app_id == app_id]

    def _def_for(self, task: Task) -> dict | None:
        return self.versions.get(task.app_id, {}).get(task.version) or self.apps.get(task.app_id)

    def task_json(self, task: Task) -> dict:
        agent = self.agents.get(task.agent)
        data = {
            "id": task.id,
            "appId": task.app_id,
            "host": task.agent,
            "ports": list(task.ports),
            "servicePorts": list(task.service_ports),
            "slaveId": agent.slave_id if agent else task.agent,
            "state": task.state,
            "stagedAt": task.staged_at,
            "version": task.version,
            "ipAddresses": [{"ipAddress": task.ip, "protocol": "IPv4"}] if task.ip else [],
        }
        if task.started_at:
            data["startedAt"] = task.started_at
        results = []
        for hs in task.health:
            if hs.alive is None and hs.last_failure is None:
                continue
            results.append(
                {
                    "alive": bool(hs.alive),
                    "consecutiveFailures": hs.consecutive_failures,
                    "firstSuccess": hs.first_success,
                    "lastSuccess": hs.last_success,
                    "lastFailure": hs.last_failure,
                    "lastFailureCause": hs.last_failure_cause,
                    "taskId": task.id,
                    "instanceId": task.id,
                }
            )
        data["healthCheckResults"] = results
        return data

    def _is_ready(self, task: Task, app: dict) -> bool:
        if task.state != RUNNING or task.launching or task.killing:
            return False
        checks = (self._def_for(task) or app).get("healthChecks") or []
        if not checks:
            return True
        return len(task.health) == len(checks) and all(h.alive is True for h in task.health)

    def app_json(self, app: dict, embed: set[str]) -> dict:
        data = copy.deepcopy(app)
        tasks = self._app_tasks(app["id"])
        has_checks = bool(app.get("healthChecks"))
        data["tasksStaged"] = sum(1 for t in tasks if t.state == STAGING)
        data["tasksRunning"] = sum(1 for t in tasks if t.state == RUNNING)
        data["tasksHealthy"] = sum(1 for t in tasks if self._is_ready(t, app)) if has_checks else 0
        data["tasksUnhealthy"] = sum(
            1 for t in tasks if t.state == RUNNING and any(h.alive is False for h in t.health)
        )
        data["deployments"] = [
            {"id": d.id} for d in self.deployments.values() if d.app_id == app["id"]
        ]
        if "tasks" in embed:
            data["tasks"] = [self.task_json(t) for t in tasks]
        if "lastTaskFailure" in embed and app["id"] in self.last_failure:
            data["lastTaskFailure"] = self.last_failure[app["id"]]
        return data

    # ---------------------------------------------------------------- API: reads

    def list_apps(self, embed: set[str], id_filter: str | None, label: str | None) -> list[dict]:
        with self.lock:
            out = []
            for app_id in sorted(self.apps):
                app = self.apps[app_id]
                if id_filter and id_filter not in app_id:
                    continue
                if label:
                    key, _, value = label.partition("==")
                    labels = app.get("labels", {})
                    if key not in labels or (value and labels[key] != value):
                        continue
                out.append(self.app_json(app, embed))
            return out

    def get_app(self, app_id: str, embed: set[str]) -> dict:
        with self.lock:
            app = self.apps.get(app_id)
            if app is None:
                raise not_found_app(app_id)
            return self.app_json(app, embed)

    def app_versions(self, app_id: str) -> list[str]:
        with self.lock:
            if app_id not in self.apps:
                raise not_found_app(app_id)
            return sorted(self.versions.get(app_id, {}), reverse=True)

    def app_version(self, app_id: str, version: str) -> dict:
        with self.lock:
            if app_id not in self.apps:
                raise not_found_app(app_id)
            found = self.versions.get(app_id, {}).get(version)
            if found is None:
                raise ApiError(
                    404, {"message": f"App '{app_id}' does not exist in version {version}"}
                )
            return copy.deepcopy(found)

    def list_tasks(self, app_id: str | None = None) -> list[dict]:
        with self.lock:
            if app_id is not None and app_id not in self.apps:
                raise not_found_app(app_id)
            return [
                self.task_json(t)
                for t in sorted(self.tasks.values(), key=lambda t: (t.app_id, t.staged_at))
                if app_id is None or t.app_id == app_id
            ]

    def list_deployments(self) -> list[dict]:
        with self.lock:
            return [d.to_json() for d in self.deployments.values()]

    def queue(self) -> list[dict]:
        with self.lock:
            out = []
            now = time.monotonic()
            for app in self.apps.values():
                alive = sum(1 for t in self._app_tasks(app["id"]) if t.alive)
                missing = app["instances"] - alive
                if missing <= 0:
                    continue
                not_before = self.backoff.get(app["id"], [0, 0.0])[1]
                out.append(
                    {
                        "app": self.app_json(app, set()),
                        "count": missing,
                        "delay": {
                            "timeLeftSeconds": max(0, round(not_before - now)),
                            "overdue": not_before <= now,
                        },
                        "since": app["version"],
                    }
                )
            return out

    def info(self) -> dict:
        host, _, port = self.leader.rpartition(":")
        return {
            "name": "marathon",
            "version": "1.11.0",
            "buildref": "saltyard-marathon-emulator",
            "elected": True,
            "leader": self.leader,
            "frameworkId": f"emulated-{self.cluster}",
            "marathon_config": {
                "master": "emulated (no Mesos): saltyard marathon emulator",
                "hostname": host,
                "framework_name": "marathon",
                "ha": False,
                "checkpoint": True,
                "local_port_min": min(a.port_range[0] for a in self.agents.values()),
                "local_port_max": max(a.port_range[1] for a in self.agents.values()),
                "task_launch_timeout": 300000,
                "features": [],
            },
            "zookeeper_config": {"zk": None},
            "http_config": {"http_port": int(port) if port.isdigit() else None},
            "event_subscriber": None,
        }

    def metrics(self) -> dict:
        with self.lock:
            gauges = {
                "marathon.apps.active.gauge": {"value": len(self.apps)},
                "marathon.deployments.active.gauge": {"value": len(self.deployments)},
                "marathon.instances.running.gauge": {
                    "value": sum(1 for t in self.tasks.values() if t.state == RUNNING)
                },
                "marathon.instances.staged.gauge": {
                    "value": sum(1 for t in self.tasks.values() if t.state == STAGING)
                },
                "marathon.uptime.gauge": {"value": int((time.time() - self.started_at) * 1000)},
            }
        return {
            "version": "4.0.0",
            "gauges": gauges,
            "counters": {},
            "histograms": {},
            "meters": {},
            "timers": {},
        }

    # ---------------------------------------------------------------- API: writes

    def _parse_definition(self, body, path_id: str | None = None) -> dict:
        if not isinstance(body, dict):
            raise ApiError(
                400,
                {
                    "message": "Invalid JSON",
                    "details": [{"path": "/", "errors": ["expected an object"]}],
                },
            )
        raw = marathon_appdef.upgrade_to_new_shape(body)
        if path_id is not None:
            raw["id"] = path_id
        if isinstance(raw.get("id"), str):
            # An id of slashes only stays as given, so the 422 names what was sent.
            if raw["id"].strip("/"):
                raw["id"] = marathon_appdef.canonical_id(raw["id"])
        appdef.validate(raw)
        return raw

    def _used_service_ports(self, exclude: str | None = None) -> set[int]:
        used = set()
        for app in self.apps.values():
            if app["id"] == exclude:
                continue
            mappings = (app.get("container") or {}).get("portMappings") or []
            used.update(pm.get("servicePort", 0) for pm in mappings)
            used.update(pd.get("port", 0) for pd in app.get("portDefinitions") or [])
        used.discard(0)
        return used

    def _check_lock(self, app_id: str, force: bool) -> None:
        holding = [d for d in self.deployments.values() if d.app_id == app_id]
        if not holding:
            return
        if not force:
            raise ApiError(
                409,
                {
                    "message": "App is locked by one or more deployments. Override with the "
                    "option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
                    "deployments": [{"id": d.id} for d in holding],
                },
            )
        for dep in holding:
            self._finish(dep, success=False)

    def _store(self, app: dict) -> None:
        self.apps[app["id"]] = app
        versions = self.versions.setdefault(app["id"], {})
        versions[app["version"]] = copy.deepcopy(app)
        for old in sorted(versions)[:-50]:
            del versions[old]

    def _new_deployment(
        self,
        app_id: str,
        steps: list[list[str]],
        original: dict | None,
        target: dict | None,
        version: str,
    ) -> Deployment:
        dep = Deployment(
            id=str(uuid.uuid4()),
            version=version,
            app_id=app_id,
            steps=steps,
            original=copy.deepcopy(original),
            target=copy.deepcopy(target),
        )
        self.deployments[dep.id] = dep
        self.backoff.pop(app_id, None)
        self.unplaced.pop(app_id, None)
        self._deployment_event("deployment_info", dep)
        return dep

    def _plan_json(self, dep: Deployment) -> dict:
        def group(app):
            return {
                "id": "/",
                "apps": [app] if app else [],
                "groups": [],
                "pods": [],
                "dependencies": [],
                "version": dep.version,
            }

        return {
            "id": dep.id,
            "version": dep.version,
            "original": group(dep.original),
            "target": group(dep.target),
            "steps": dep.to_json()["steps"],
        }

    def _deployment_event(self, event_type: str, dep: Deployment) -> None:
        fields = {"plan": self._plan_json(dep)}
        if event_type in ("deployment_success", "deployment_failed"):
            fields["id"] = dep.id
        if event_type in ("deployment_info", "deployment_step_success"):
            fields["currentStep"] = (
                dep.to_json()["steps"][dep.current_step - 1] if dep.steps else {}
            )
        self.events.publish(event_type, **fields)

    def create_app(self, body, client_ip: str, uri: str = "/v2/apps") -> dict:
        with self.lock:
            raw = self._parse_definition(body)
            app_id = raw["id"]
            if app_id in self.apps:
                raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
            self._check_lock(app_id, force=False)
            dep = self._create_locked(raw, client_ip, uri)
            return self.app_json(self.apps[app_id], {"tasks"}) | {"deployments": [{"id": dep.id}]}

    def _create_locked(self, raw: dict, client_ip: str, uri: str) -> Deployment:
        app = appdef.normalize(raw, None, self._used_service_ports())
        version = now_version(max(self.versions.get(app["id"], {}) or [""]) or None)
        app["version"] = version
        app["versionInfo"] = {"lastScalingAt": version, "lastConfigChangeAt": version}
        self._store(app)
        self.events.publish("api_post_event", clientIp=client_ip, uri=uri, appDefinition=app)
        dep = self._new_deployment(
            app["id"], [["StartApplication"], ["ScaleApplication"]], None, app, version
        )
        self._save()
        return dep

    def update_app(self, app_id: str, body, force: bool, client_ip: str) -> tuple[int, dict]:
        with self.lock:
            current = self.apps.get(app_id)
            if current is None:
                raw = self._parse_definition(body, path_id=app_id)
                self._check_lock(raw["id"], force)
                dep = self._create_locked(raw, client_ip, f"/v2/apps{app_id}")
                return 201, {"deploymentId": dep.id, "version": dep.version}
            if isinstance(body, dict) and set(body) <= {"version", "id"} and "version" in body:
                target = self.versions.get(app_id, {}).get(body["version"])
                if target is None:
                    raise ApiError(
                        404,
                        {"message": f"App '{app_id}' does not exist in version {body['version']}"},
                    )
                raw = {k: v for k, v in target.items() if k not in ("version", "versionInfo")}
            else:
                if not isinstance(body, dict):
                    self._parse_definition(body)
                merged = {k: v for k, v in current.items() if k not in ("version", "versionInfo")}
                update = marathon_appdef.upgrade_to_new_shape(body)
                update.pop("id", None)
                update.pop("version", None)
                merged.update(update)
                raw = self._parse_definition(merged, path_id=app_id)
            self._check_lock(app_id, force)
            dep = self._replace_locked(current, raw, client_ip, f"/v2/apps{app_id}")
            return 200, {"deploymentId": dep.id, "version": dep.version}

    def _replace_locked(
        self, current: dict, raw: dict, client_ip: str, uri: str, restart: bool = False
    ) -> Deployment:
        app = appdef.normalize(raw, current, self._used_service_ports(exclude=current["id"]))
        version = now_version(current["version"])
        config_changed = restart or appdef.config_view(app) != appdef.config_view(current)
        info = dict(current["versionInfo"])
        if config_changed:
            info = {"lastScalingAt": version, "lastConfigChangeAt": version}
        else:
            info["lastScalingAt"] = version
        app["version"] = version
        app["versionInfo"] = info
        self._store(app)
        self.events.publish("api_post_event", clientIp=client_ip, uri=uri, appDefinition=app)
        steps = [["RestartApplication"]] if config_changed else [["ScaleApplication"]]
        dep = self._new_deployment(app["id"], steps, current, app, version)
        self._save()
        return dep

    def restart_app(self, app_id: str, force: bool, client_ip: str) -> dict:
        with self.lock:
            current = self.apps.get(app_id)
            if current is None:
                raise not_found_app(app_id)
            self._check_lock(app_id, force)
            raw = {k: v for k, v in current.items() if k not in ("version", "versionInfo")}
            dep = self._replace_locked(current, raw, client_ip, f"/v2/apps{app_id}/restart", True)
            return {"deploymentId": dep.id, "version": dep.version}

    def delete_app(self, app_id: str, force: bool) -> dict:
        with self.lock:
            current = self.apps.get(app_id)
            if current is None:
                raise not_found_app(app_id)
            self._check_lock(app_id, force)
            dep = self._delete_locked(current)
            return {"deploymentId": dep.id, "version": dep.version}

    def _delete_locked(self, current: dict) -> Deployment:
        del self.apps[current["id"]]
        version = now_version(current["version"])
        dep = self._new_deployment(current["id"], [["StopApplication"]], current, None, version)
        self._save()
        return dep

    # ---------------------------------------------------------------- Mesos maintenance

    def _scheduled(self) -> set[str]:
        return {
            m.get("hostname")
            for window in self.maintenance_windows
            for m in window.get("machine_ids", [])
        }

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

    def kill_tasks(
        self,
        app_id: str | None,
        task_ids: list[str] | None,
        scale: bool,
        host: str | None = None,
        force: bool = False,
    ) -> dict:
        """Kill tasks of one app (``app_id``) or by id across apps (``app_id`` None)."""
        with self.lock:
            if app_id is not None and app_id not in self.apps:
                raise not_found_app(app_id)
            if task_ids is None:
                chosen = [t for t in self._app_tasks(app_id) if not host or t.agent == host]
            else:
                chosen = []
                for tid in task_ids:
                    task = self.tasks.get(tid)
                    if task is None or (app_id is not None and task.app_id != app_id):
                        if app_id is not None and len(task_ids) == 1:
                            raise ApiError(404, {"message": f"Task '{tid}' does not exist"})
                        continue
                    chosen.append(task)
            if not scale:
                for task in chosen:
                    self._kill(task, "killed through the API")
                return {"tasks": [self.task_json(t) for t in chosen]}
            by_app: dict[str, list[Task]] = {}
            for task in chosen:
                by_app.setdefault(task.app_id, []).append(task)
            for aid in by_app:
                self._check_lock(aid, force)
            result = {"deploymentId": None, "version": None}
            for aid, tasks in by_app.items():
                current = self.apps[aid]
                raw = {k: v for k, v in current.items() if k not in ("version", "versionInfo")}
                raw["instances"] = max(0, current["instances"] - len(tasks))
                dep = self._replace_locked(current, raw, "api", f"/v2/apps{aid}/tasks")
                dep.kill_first = {t.id for t in tasks}
                self._save()
                result = {"deploymentId": dep.id, "version": dep.version}
            return result

    def cancel_deployment(self, deployment_id: str, force: bool) -> dict | None:
        with self.lock:
            dep = self.deployments.get(deployment_id)
            if dep is None:
                raise ApiError(404, {"message": f"DeploymentPlan {deployment_id} does not exist"})
            self._finish(dep, success=False)
            if force:
                self._save()
                return None
            # Roll back: a new deployment towards the original state.
            current = self.apps.get(dep.app_id)
            if dep.original is None:
                new = self._delete_locked(current) if current else None
            elif current is None:
                raw = {k: v for k, v in dep.original.items() if k not in ("version", "versionInfo")}
                new = self._create_locked(raw, "api", f"/v2/deployments/{deployment_id}")
            else:
                raw = {k: v for k, v in dep.original.items() if k not in ("version", "versionInfo")}
                new = self._replace_locked(current, raw, "api", f"/v2/deployments/{deployment_id}")
            self._save()
            if new is None:
                return {"deploymentId": None, "version": now_version()}
            return {"deploymentId": new.id, "version": new.version}

    # ---------------------------------------------------------------- deployments

    def _finish(self, dep: Deployment, success: bool) -> None:
        self.deployments.pop(dep.id, None)
        if success:
            if dep.steps:
                self._deployment_event("deployment_step_success", dep)
            self._deployment_event("deployment_success", dep)
        else:
            self._deployment_event("deployment_failed", dep)
        self._save()

    def _drive(self, dep: Deployment) -> None:
        tasks = self._app_tasks(dep.app_id)
        if dep.target is None:  # StopApplication
            for t in tasks:
                self._kill(t, "app deleted")
            if not tasks:
                if dep.app_id not in self.apps:
                    self.versions.pop(dep.app_id, None)
                    self.last_failure.pop(dep.app_id, None)
                    self.events.publish("app_terminated_event", appId=dep.app_id)
                self._finish(dep, success=True)
            return
        app = self.apps.get(dep.app_id)
        if app is None:  # deleted under a forced deployment
            self._finish(dep, success=False)
            return
        if dep.steps and dep.steps[dep.current_step - 1] == ["StartApplication"]:
            self._deployment_event("deployment_step_success", dep)
            dep.current_step += 1
            self._deployment_event("deployment_info", dep)
            self._save()
        for t in tasks:
            if t.id in dep.kill_first:
                self._kill(t, "killed and scaled through the API")
        dep.kill_first &= {t.id for t in tasks if not t.killing}
        done = self._converge(app, tasks)
        if done and not dep.kill_first:
            self._finish(dep, success=True)

    def _converge(self, app: dict, tasks: list[Task]) -> bool:
        cfg = app["versionInfo"]["lastConfigChangeAt"]
        alive = [t for t in tasks if t.alive]
        killing = sum(1 for t in tasks if t.killing)
        old = [t for t in alive if t.config_version != cfg]
        new = [t for t in alive if t.config_version == cfg]
        ready_new = [t for t in new if self._is_ready(t, app)]
        strategy = app["upgradeStrategy"]
        decision = rolling_step(
            app["instances"],
            len(old),
            len(new),
            len(ready_new),
            killing,
            strategy["minimumHealthCapacity"],
            strategy["maximumOverCapacity"],
        )
        youngest_first = app.get("killSelection", "YOUNGEST_FIRST") == "YOUNGEST_FIRST"

        def kill_order(group: list[Task]) -> list[Task]:
            # Not-ready instances first, then by kill selection.
            ordered = sorted(group, key=lambda t: t.staged_at, reverse=youngest_first)
            return sorted(ordered, key=lambda t: self._is_ready(t, app))

        for t in kill_order(new)[: decision.kill_new]:
            self._kill(t, "scaled down")
        for t in kill_order(old)[: decision.kill_old]:
            self._kill(t, "replaced by a new version")
        for _ in range(decision.start_new):
            if not self._launch(app):
                break
        return (
            not old
            and killing == 0
            and decision.kill_new == 0
            and len(ready_new) == app["instances"]
            and len(new) == app["instances"]
        )

    def _maintain(self, app: dict) -> None:
        """Outside deployments: replace lost/failed instances (the launch queue)."""
        alive = [t for t in self._app_tasks(app["id"]) if t.alive]
        for _ in range(app["instances"] - len(alive)):
            if not self._launch(app):
                break

    # ---------------------------------------------------------------- tasks

    def _emit_status(self, task: Task, status: str, message: str = "") -> None:
        agent = self.agents.get(task.agent)
        slave = agent.slave_id if agent else task.agent
        self.events.publish(
            "status_update_event",
            slaveId=slave,
            taskId=task.id,
            taskStatus=status,
            message=message,
            appId=task.app_id,
            host=task.agent,
            ipAddresses=[{"ipAddress": task.ip, "protocol": "IPv4"}] if task.ip else [],
            ports=list(task.ports),
            version=task.version,
        )
        self.events.publish(
            "instance_changed_event",
            instanceId=task.id,
            slaveId=slave,
            condition=CONDITIONS.get(status, status),
            host=task.agent,
            runSpecId=task.app_id,
            runSpecVersion=task.version,
        )

    def _publish_task_event(self, event: str, task: Task, **fields) -> None:
        self.events.publish(
            event,
            appId=task.app_id,
            taskId=task.id,
            instanceId=task.id,
            version=task.version,
            **fields,
        )

    def _record_failure(self, task: Task, state: str, message: str) -> None:
        agent = self.agents.get(task.agent)
        self.last_failure[task.app_id] = {
            "appId": task.app_id,
            "host": task.agent,
            "message": message,
            "state": state,
            "taskId": task.id,
            "timestamp": now_version(),
            "version": task.version,
            "slaveId": agent.slave_id if agent else task.agent,
        }
        app = self.apps.get(task.app_id)
        if app is None:
            return
        entry = self.backoff.setdefault(task.app_id, [0, 0.0])
        entry[0] += 1
        delay = min(
            app["backoffSeconds"] * app["backoffFactor"] ** (entry[0] - 1),
            app["maxLaunchDelaySeconds"],
        )
        entry[1] = time.monotonic() + delay

    def _forget(self, task: Task) -> None:
        self.tasks.pop(task.id, None)
        self._gone[task.id] = time.monotonic()

    def _launch(self, app: dict) -> bool:
        now = time.monotonic()
        if self.backoff.get(app["id"], [0, 0.0])[1] > now:
            return False
        tasks = [t for t in self._app_tasks(app["id"]) if t.alive]
        placed = [self.agents[t.agent].info for t in tasks if t.agent in self.agents]
        infos = [a.info for a in self.agents.values() if a.name not in self.down_machines]
        mode = appdef.network_mode(app)
        mappings = (app.get("container") or {}).get("portMappings") or []
        if mode == "host":
            defs = app.get("portDefinitions") or []
            fixed = [pd["port"] if app.get("requirePorts") else 0 for pd in defs]
        else:
            fixed = [pm.get("hostPort", 0) for pm in mappings]
        candidates = []
        for info in eligible_agents(app.get("constraints") or [], infos, placed):
            taken = {p for t in self.tasks.values() if t.agent == info.name for p in t.ports}
            if any(p and p in taken for p in fixed):
                continue
            candidates.append((info, taken))
        if not candidates:
            self.unplaced[app["id"]] = "no agent matches the constraints and fixed ports"
            return False
        load = {info.name: sum(1 for p in placed if p.name == info.name) for info, _ in candidates}
        info, taken = min(candidates, key=lambda c: (load[c[0].name], c[0].name))
        agent = self.agents[info.name]
        try:
            random_ports = iter(agent.pick_ports(sum(1 for p in fixed if not p), taken))
        except RuntimeError as exc:
            self.unplaced[app["id"]] = str(exc)
            return False
        host_ports = [p or next(random_ports) for p in fixed]
        if mode == "host":
            container_ports = list(host_ports)
            service_ports = [pd["port"] for pd in app.get("portDefinitions") or []]
        else:
            container_ports = [
                pm.get("containerPort") or hp for pm, hp in zip(mappings, host_ports, strict=True)
            ]
            service_ports = [pm.get("servicePort", 0) for pm in mappings]
        self.unplaced.pop(app["id"], None)
        task = Task(
            id=f"{appdef.task_id_prefix(app['id'])}.{uuid.uuid4()}",
            app_id=app["id"],
            agent=agent.name,
            version=app["version"],
            config_version=app["versionInfo"]["lastConfigChangeAt"],
            ports=host_ports,
            container_ports=container_ports,
            service_ports=service_ports,
            staged_at=now_version(),
        )
        self.tasks[task.id] = task
        self._emit_status(task, STAGING)
        self._docker_pool.submit(self._start_task, task.id, copy.deepcopy(app))
        return True

    def _task_env(self, task: Task, app: dict) -> dict[str, str]:
        env = dict(app.get("env") or {})
        image = ((app.get("container") or {}).get("docker") or {}).get("image", "")
        env.update(
            {
                "HOST": task.agent,
                "PORTS": ",".join(str(p) for p in task.ports),
                "MARATHON_APP_ID": app["id"],
                "MARATHON_APP_VERSION": app["version"],
                "MARATHON_APP_DOCKER_IMAGE": image,
                "MARATHON_APP_RESOURCE_CPUS": str(app.get("cpus")),
                "MARATHON_APP_RESOURCE_MEM": str(app.get("mem")),
                "MARATHON_APP_RESOURCE_DISK": str(app.get("disk")),
                "MARATHON_APP_RESOURCE_GPUS": str(app.get("gpus")),
                "MARATHON_APP_LABELS": " ".join(sorted(app.get("labels") or {})),
                "MESOS_TASK_ID": task.id,
            }
        )
        for key, value in (app.get("labels") or {}).items():
            safe = "".join(c if c.isalnum() else "_" for c in key).upper()
            env[f"MARATHON_APP_LABEL_{safe}"] = value
        if task.ports:
            env["PORT"] = str(task.ports[0])
        mappings = (app.get("container") or {}).get("portMappings") or []
        defs = mappings or app.get("portDefinitions") or []
        for i, port in enumerate(task.ports):
            env[f"PORT{i}"] = str(port)
            name = defs[i].get("name") if i < len(defs) else None
            if name:
                env[f"PORT_{name.upper().replace('-', '_')}"] = str(port)
            if mappings:
                env[f"PORT_{task.container_ports[i]}"] = str(port)
        return env

    def _ensure_image(self, agent: Agent, image: str, force_pull: bool) -> None:
        """Pull only from the registries named with --pull-from: a reference to any other registry
        must already be on the agent's engine (no lookup ever leaves the cluster)."""
        client = agent.client
        may_pull = image_registry(image) in self.pull_from
        if force_pull and may_pull:
            client.images.pull(image, auth_config=self.pull_auth)
            return
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            if not may_pull:
                allowed = ", ".join(self.pull_from) or "none"
                raise RuntimeError(
                    f"image {image!r} is not on agent {agent.name}'s engine and its registry "
                    f"{image_registry(image)!r} is not one this emulator pulls from "
                    f"(--pull-from: {allowed})"
                ) from None
            client.images.pull(image, auth_config=self.pull_auth)

    def _labels(self, task: Task) -> dict[str, str]:
        return {
            f"{LABEL}.cluster": self.cluster,
            f"{LABEL}.agent": task.agent,
            f"{LABEL}.app-id": task.app_id,
            f"{LABEL}.task-id": task.id,
            f"{LABEL}.version": task.version,
            f"{LABEL}.config-version": task.config_version,
            f"{LABEL}.ports": ",".join(str(p) for p in task.ports),
            f"{LABEL}.container-ports": ",".join(str(p) for p in task.container_ports),
            f"{LABEL}.service-ports": ",".join(str(p) for p in task.service_ports),
            f"{LABEL}.staged-at": task.staged_at,
        }

    def _start_task(self, task_id: str, app: dict) -> None:
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                return
            agent = self.agents[task.agent]
            env = self._task_env(task, app)
            labels = self._labels(task)
        container = None
        try:
            kwargs = docker_run_kwargs(
                app,
                task.id,
                agent,
                task.ports,
                task.container_ports,
                labels,
                env,
                self.default_image,
                self.use_init,
            )
            client = agent.client
            image = kwargs["image"]
            force_pull = ((app.get("container") or {}).get("docker") or {}).get("forcePullImage")
            self._ensure_image(agent, image, bool(force_pull))
            kwargs.pop("detach", None)
            container = client.containers.create(**kwargs)
            container.start()
            container.reload()
        except Exception as exc:  # any failure to launch is a TASK_FAILED with the reason
            message = f"launch failed: {exc}"
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
            with self.lock:
                task = self.tasks.get(task_id)
                if task is not None:
                    self._forget(task)
                    self._record_failure(task, "TASK_FAILED", message)
                    self._emit_status(task, "TASK_FAILED", message)
            log.warning("task %s: %s", task_id, message)
            return
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                gone = True
            else:
                gone = False
                task.container_id = container.id
                task.launching = False
                task.launched_mono = time.monotonic()
                networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
                task.ip = next(
                    (n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None
                )
                if task.killing:
                    self._docker_pool.submit(self._stop_task, task.id)
                else:
                    task.state = RUNNING
                    task.started_at = now_version()
                    task.started_mono = time.monotonic()
                    self._emit_status(task, RUNNING)
        if gone:
            container.remove(force=True)

    def _kill(self, task: Task, reason: str) -> None:
        if task.killing:
            return
        task.killing = True
        task.state = KILLING
        self._emit_status(task, KILLING, reason)
        if not task.launching:
            self._docker_pool.submit(self._stop_task, task.id)

    def _stop_task(self, task_id: str) -> None:
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                return
            agent = self.agents[task.agent]
            app = self._def_for(task) or {}
            grace = app.get("taskKillGracePeriodSeconds") or self.kill_grace
        try:
            container = agent.client.containers.get(task.container_id or "marathon-" + task_id)
            container.stop(timeout=int(grace))
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except Exception:
            log.exception("task %s: stopping its container failed; the next sync retries", task_id)
            with self.lock:
                task.killing = False  # let _kill schedule it again
            return
        with self.lock:
            task = self.tasks.get(task_id)
            if task is not None:
                self._forget(task)
                self._emit_status(task, "TASK_KILLED")

    # ---------------------------------------------------------------- docker sync / adoption

    def _sync_all(self, adopt_unknown: bool) -> None:
        for agent in self.agents.values():
            started = time.monotonic()
            try:
                containers = agent.list_task_containers(self.cluster)
            except Exception as exc:
                log.warning("agent %s: listing containers failed: %s", agent.name, exc)
                continue
            self._sync_agent(agent, containers, started, adopt_unknown)

    def _sync_agent(self, agent: Agent, containers, listed_at: float, adopt_unknown: bool) -> None:
        by_task = {container_labels(c).get(f"{LABEL}.task-id"): c for c in containers}
        exited, unknown = [], []
        with self.lock:
            for task in [t for t in self.tasks.values() if t.agent == agent.name]:
                if task.launching or task.launched_mono > listed_at:
                    continue
                container = by_task.get(task.id)
                if container is None:
                    if task.killing:
                        self._forget(task)
                        self._emit_status(task, "TASK_KILLED")
                        continue
                    self._forget(task)
                    self._record_failure(task, "TASK_LOST", "container disappeared")
                    self._emit_status(task, "TASK_LOST", "container disappeared")
                elif container_state(container) in ("exited", "dead"):
                    if not task.killing:
                        exited.append((task, container))
                elif task.killing and task.container_id is None:
                    task.container_id = container.id
                    self._docker_pool.submit(self._stop_task, task.id)
            for tid, container in by_task.items():
                if tid in self.tasks or tid in self._gone:
                    continue
                app_id = container_labels(container).get(f"{LABEL}.app-id")
                known = app_id in self.apps or any(
                    d.app_id == app_id for d in self.deployments.values()
                )
                if known and (adopt_unknown or container_state(container) == "running"):
                    self._adopt(agent, container)
                else:
                    unknown.append(container)
        for task, container in exited:
            try:
                container.reload()
            except docker.errors.NotFound:
                continue  # removed meanwhile: the next sync reports the task lost
            message = describe_exit(container)
            code = container.attrs.get("State", {}).get("ExitCode")
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
            state = "TASK_FINISHED" if code == 0 else "TASK_FAILED"
            with self.lock:
                if self.tasks.get(task.id) is task and not task.killing:
                    self._forget(task)
                    self._record_failure(task, state, message)
                    self._emit_status(task, state, message)
        for container in unknown:
            log.info("removing container %s of an unknown app", container.name)
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass

    def _adopt(self, agent: Agent, container) -> None:
        try:
            container.reload()  # full inspect: start time, network
        except docker.errors.NotFound:
            return
        labels = container_labels(container)

        def ints(key: str) -> list[int]:
            return [int(p) for p in labels.get(f"{LABEL}.{key}", "").split(",") if p]

        state = container.attrs.get("State", {})
        started = state.get("StartedAt", "")
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        task = Task(
            id=labels[f"{LABEL}.task-id"],
            app_id=labels[f"{LABEL}.app-id"],
            agent=agent.name,
            version=labels.get(f"{LABEL}.version", ""),
            config_version=labels.get(f"{LABEL}.config-version", ""),
            ports=ints("ports"),
            container_ports=ints("container-ports"),
            service_ports=ints("service-ports"),
            staged_at=labels.get(f"{LABEL}.staged-at", now_version()),
            state=RUNNING,
            started_at=(started[:23] + "Z") if len(started) >= 23 else now_version(),
            container_id=container.id,
            ip=next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None),
            launching=False,
        )
        try:
            age = time.time() - appdef.parse_ts(task.started_at).timestamp()
        except ValueError:
            age = 0.0
        task.started_mono = time.monotonic() - max(0.0, age)
        # As after a Marathon restart or leader change: no health result is known, and the
        # first check comes one interval later (Marathon's health check actors start with a
        # full interval), so clients see RUNNING tasks without results for that long.
        now = time.monotonic()
        task.health = [
            HealthState(next_due=now + max(0.2, hc.get("intervalSeconds", 60)))
            for hc in (self._def_for(task) or {}).get("healthChecks") or []
        ]
        self.tasks[task.id] = task
        log.info("adopted task %s of %s on %s", task.id, task.app_id, agent.name)

    # ---------------------------------------------------------------- health checks

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
                port = hc.get("port")
                if port is None and hc.get("protocol") != "COMMAND":
                    idx = hc.get("portIndex", 0)
                    port = task.ports[idx] if idx < len(task.ports) else None
                self._probe_pool.submit(
                    self._run_probe, task.id, i, dict(hc), agent, port, task.container_id
                )

    def _run_probe(self, task_id: str, index: int, hc: dict, agent: Agent, port, cid) -> None:
        try:
            ok, cause = probe(hc, agent, port, cid)
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


def probe(hc: dict, agent: Agent, port, container_id) -> tuple[bool, str]:
    """Run one health check. HTTP(S) passes on 200-399 within the timeout."""
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
            with socket.create_connection((agent.address, port), timeout=timeout):
                return True, ""
        except OSError as exc:
            return False, f"TCP connect to {agent.address}:{port} failed: {exc}"
    if protocol in ("HTTPS", "MESOS_HTTPS"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(agent.address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(agent.address, port, timeout=timeout)
    try:
        conn.request("GET", hc.get("path") or "/")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {hc.get('path') or '/'} on {agent.address}:{port} failed: {exc}"
    finally:
        conn.close()
    if 200 <= status < 400:
        return True, ""
    return False, f"GET {hc.get('path') or '/'} on {agent.address}:{port} returned {status}"


def parse_bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return _true(value)


__all__ = ["ApiError", "Emulator", "ValidationFailed", "parse_bool"]
