"""Tasks as Docker containers: launching (placement, image, environment, labels), killing
(TASK_KILLING, then a stop with the kill grace), status events and failures, and the container
sync that notices exits and adopts this cluster's containers after a restart. Mixed into
``Emulator``: state and lock are the Emulator's; Docker calls run in its docker pool outside the
lock.
"""

from __future__ import annotations

import copy
import logging
import random
import time
import uuid

import docker.errors

from . import appdef
from .agents import (
    LABEL,
    Agent,
    container_ips,
    container_labels,
    container_networks,
    container_state,
    describe_exit,
    docker_run_kwargs,
    image_registry,
    missing_networks,
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
            ipAddresses=[{"ipAddress": ip, "protocol": "IPv4"} for ip in task.ips],
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
        # Marathon declines offers of agents in maintenance (DRAINING or DOWN).
        unavailable = self._unavailable()
        infos = [a.info for a in self.agents.values() if a.name not in unavailable]
        mode = appdef.network_mode(app)
        mappings = (app.get("container") or {}).get("portMappings") or []
        # Per port definition or mapping: a fixed host port, 0 for a random one, None for none
        # (a mapping on a container network without hostPort: Marathon takes no host port).
        fixed: list[int | None]
        if mode == "host":
            defs = app.get("portDefinitions") or []
            fixed = [pd["port"] if app.get("requirePorts") else 0 for pd in defs]
        else:
            fixed = [pm.get("hostPort") for pm in mappings]
        roles = app.get("acceptedResourceRoles") or self.default_accepted_roles
        candidates = []
        for info in eligible_agents(app.get("constraints") or [], infos, placed, roles):
            taken = {p for t in self.tasks.values() if t.agent == info.name for p in t.ports}
            if any(p and p in taken for p in fixed):
                continue
            candidates.append((info, taken))
        if not candidates:
            self.unplaced[app["id"]] = (
                "no agent matches the constraints, the accepted resource roles "
                f"{sorted(roles)} and fixed ports"
            )
            return False
        load = {info.name: sum(1 for p in placed if p.name == info.name) for info, _ in candidates}
        info, taken = min(candidates, key=lambda c: (load[c[0].name], c[0].name))
        agent = self.agents[info.name]
        try:
            random_ports = iter(agent.pick_ports(sum(1 for p in fixed if p == 0), taken))
        except RuntimeError as exc:
            self.unplaced[app["id"]] = str(exc)
            return False
        by_index = [None if p is None else p or next(random_ports) for p in fixed]
        host_ports = [p for p in by_index if p is not None]
        if mode == "host":
            container_ports = list(host_ports)
            service_ports = [pd["port"] for pd in app.get("portDefinitions") or []]
        else:
            container_ports = container_ports_for(mappings, by_index)
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
            host_ports_by_index=by_index,
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
        # Marathon's rules (EnvironmentHelper.portsEnv): PORT<i> is mapping i's host port, or
        # its container port when it has none (container networks); PORT_<NAME> only for host
        # ports; PORT and PORTS: the host ports, then container ports chosen at launch.
        mappings = (app.get("container") or {}).get("portMappings") or []
        defs = mappings or app.get("portDefinitions") or []
        chosen = [
            task.container_ports[i]
            for i, hp in enumerate(task.slots)
            if hp is None and i < len(mappings) and not mappings[i].get("containerPort")
        ]
        assigned = list(task.ports) + chosen
        env["PORTS"] = ",".join(str(p) for p in assigned)
        if assigned:
            env["PORT"] = str(assigned[0])
        for i, hp in enumerate(task.slots):
            value = hp if hp is not None else task.container_ports[i]
            env[f"PORT{i}"] = str(value)
            name = defs[i].get("name") if i < len(defs) else None
            if name and hp is not None:
                env[f"PORT_{name.upper().replace('-', '_')}"] = str(hp)
            if mappings:
                env[f"PORT_{task.container_ports[i]}"] = str(value)
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
            f"{LABEL}.host-ports-by-index": ",".join(
                "-" if p is None else str(p) for p in task.slots
            ),
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
                task.slots,
                task.container_ports,
                labels,
                env,
                self.default_image,
                self.use_init,
            )
            client = agent.client
            networks = container_networks(app)
            missing = missing_networks(client, networks)
            if missing:
                # Marathon hands the name to the agent, whose Docker refuses to run the
                # container: the task fails (and is relaunched with backoff).
                raise RuntimeError(
                    f"the app's container network(s) {', '.join(map(repr, missing))} do not "
                    f"exist on agent {task.agent}'s Docker engine (networks[].name; create the "
                    "network on every agent the app may run on)"
                )
            image = kwargs["image"]
            force_pull = ((app.get("container") or {}).get("docker") or {}).get("forcePullImage")
            self._ensure_image(agent, image, bool(force_pull))
            kwargs.pop("detach", None)
            container = client.containers.create(**kwargs)
            for name in networks[1:]:
                client.networks.get(name).connect(container)
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
                task.ips = container_ips(container, networks)
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
        slots = [
            None if p == "-" else int(p)
            for p in labels.get(f"{LABEL}.host-ports-by-index", "").split(",")
            if p
        ]
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
            launching=False,
            host_ports_by_index=slots,
        )
        task.ips = container_ips(container, container_networks(self._def_for(task) or {}))
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


def container_ports_for(mappings: list[dict], host_ports: list[int | None]) -> list[int]:
    """Each port mapping's container port: its ``containerPort``, where 0 means its host port
    (BRIDGE, or a container network with a ``hostPort``) or, for a mapping without a host port,
    a port chosen at launch, as Marathon's ContainerPortGenerator does (1025-65535, none of the
    app's other ports; the task learns it as ``$PORT<i>``, the API never shows it)."""
    consumed = {pm.get("containerPort") or 0 for pm in mappings} | {p for p in host_ports if p}
    ports = []
    for pm, hp in zip(mappings, host_ports, strict=True):
        port = pm.get("containerPort") or hp
        if not port:
            port = random.randint(1025, 65535)
            while port in consumed:
                port = random.randint(1025, 65535)
        consumed.add(port)
        ports.append(port)
    return ports
