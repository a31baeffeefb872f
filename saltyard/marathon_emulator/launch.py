"""Tasks as Docker containers: launching (placement, image, environment, labels), killing
(TASK_KILLING, then a stop with the kill grace), status events and failures, and the container
sync that notices exits and adopts this cluster's containers after a restart. Mixed into
``Emulator``: state and lock are the Emulator's; Docker calls run in its docker pool outside the
lock.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid

import docker.errors

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
from .appdef import now_version
from .model import CONDITIONS, KILLING, RUNNING, STAGING, HealthState, Task
from .placement import eligible_agents

# The same logger as the rest of the emulator: one name in the journal.
log = logging.getLogger("saltyard.marathon_emulator")


class LaunchMixin:
    """Task launch, kill, container sync and adoption. Methods use the Emulator's attributes
    (``self.lock``, ``self.apps``, ``self.tasks``, ...); none takes a lock of its own."""

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
