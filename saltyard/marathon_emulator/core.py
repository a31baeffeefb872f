"""The emulator's state and scheduler: apps, versions, tasks, persistence, rendering and the
app API. Deployments, Mesos maintenance, Docker launch/adoption and health checks are mixins in
their own modules (deployments.py, maintenance.py, launch.py, health.py) over this state.

One lock (``Emulator.lock``) guards all state, the mixins' included. Docker calls and probes
run in thread pools outside the lock; a single loop thread ticks (default every 0.25 s) to sync
containers, schedule health checks and drive deployments. Everything the API changes is
written to the state file (atomic replace).
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import logging
import os
import threading
import time
from pathlib import Path

from saltyard import marathon_appdef

from . import appdef
from .agents import Agent
from .appdef import ValidationFailed, now_version
from .deployments import DeploymentsMixin
from .events import EventBus
from .health import HealthMixin
from .launch import LaunchMixin
from .maintenance import MaintenanceMixin
from .model import RUNNING, STAGING, ApiError, Deployment, Task, _true, not_found_app
from .placement import UNRESERVED, role_error

log = logging.getLogger("saltyard.marathon_emulator")


class Emulator(DeploymentsMixin, MaintenanceMixin, LaunchMixin, HealthMixin):
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
        mesos_role: str = UNRESERVED,
        default_accepted_roles: tuple[str, ...] | None = None,
    ):
        if not agents:
            raise ValueError("at least one agent is needed")
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate agent names in {names}")
        if role_error(mesos_role):
            raise ValueError(f"mesos role: {role_error(mesos_role)}")
        # Marathon's --mesos_role: it is offered unreserved resources and those of this role.
        self.mesos_role = mesos_role
        # Marathon's --default_accepted_resource_roles, for apps without acceptedResourceRoles;
        # by default every role Marathon is offered.
        offered = {UNRESERVED, mesos_role}
        self.default_accepted_roles = tuple(default_accepted_roles or sorted(offered))
        never = [r for r in self.default_accepted_roles if r not in offered]
        if never:
            raise ValueError(
                f"default accepted resource roles {never} are never offered to this Marathon "
                f"(its role is {mesos_role!r})"
            )
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
            "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"} for ip in task.ips],
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
                # Marathon reports the option as given: null when it has no --mesos_role.
                "mesos_role": None if self.mesos_role == UNRESERVED else self.mesos_role,
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
        appdef.validate(raw, self.mesos_role)
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


def parse_bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return _true(value)


__all__ = ["ApiError", "Emulator", "ValidationFailed", "parse_bool"]
