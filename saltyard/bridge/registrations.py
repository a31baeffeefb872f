"""What a Marathon app's tasks should look like in Consul: pure functions, no I/O.

``desired_registrations`` turns one app (with its embedded tasks) into the Consul service
instances the bridge should hold for it, plus the reasons it holds none for the app or for
single tasks. The daemon compares that with what Consul has and writes the difference.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

# Ownership marks: the bridge only ever changes nodes and services that carry them.
OWNER_META = {"saltyard-bridge": "owned"}
NODE_META = {"external-node": "true", **OWNER_META}
NODE_PREFIX = "marathon-"

LABEL_SERVICE = "saltyard.service"
LABEL_ENV = "saltyard.env"
LABEL_VERSION = "saltyard.version"
LABEL_TRACK = "saltyard.track"
LABEL_PORT_INDEX = "saltyard.port-index"
LABEL_NO_HEALTH_CHECKS = "saltyard.register-without-health-checks"
TRACKS = ("stable", "canary")
ENV_ATTRIBUTE = "env"  # the Mesos agent attribute a CLUSTER/IS constraint pins the app with

# Tasks in these states are gone or going: their instances leave Consul at once.
GONE_STATES = frozenset(
    {
        "TASK_KILLING",
        "TASK_KILLED",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNREACHABLE",
        "TASK_UNKNOWN",
    }
)

# Consul service names end up in DNS names and consul-template queries ("dots break tags").
SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Why an app has no instances in Consul (metrics label values).
NO_HEALTH_CHECKS = "no_health_checks"
NO_ENV = "no_env"
UNKNOWN_ENV = "unknown_env"
BAD_LABEL = "bad_label"
# Why a single task is left out.
UNRESOLVED_HOST = "unresolved_host"
NO_PORT = "no_port"
NO_ADDRESS = "no_address"  # on a container network, and Marathon shows no address for it (yet)


@dataclass(frozen=True)
class Registration:
    """One Consul service instance on the external node of the task's agent host.

    ``address`` is where the instance is reached (the agent host's, or on a container network
    the task's own); ``node_address`` is the agent host's, the external node's address (left
    out: the same as ``address``)."""

    service_id: str
    service: str
    node: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    node_address: str = ""

    def __post_init__(self) -> None:
        if not self.node_address:
            object.__setattr__(self, "node_address", self.address)

    @property
    def app_id(self) -> str:
        return dict(self.meta).get("marathon-app", "")

    @property
    def host(self) -> str:
        return dict(self.meta).get("marathon-host", "")

    def node_meta(self) -> dict[str, str]:
        return {**NODE_META, "marathon-host": self.host}

    def service_body(self) -> dict[str, Any]:
        return {
            "ID": self.service_id,
            "Service": self.service,
            "Tags": list(self.tags),
            "Address": self.address,
            "Port": self.port,
            "Meta": dict(self.meta),
        }

    @classmethod
    def from_catalog(
        cls, node: str, service: Mapping[str, Any], node_address: str | None = None
    ) -> Registration:
        """The form Consul's catalog gives back (``/v1/catalog/node/<node>`` services, and the
        node's address; without it, the service's)."""
        return cls(
            service_id=service["ID"],
            service=service["Service"],
            node=node,
            address=service.get("Address") or "",
            port=int(service.get("Port") or 0),
            tags=tuple(sorted(service.get("Tags") or ())),
            meta=tuple(sorted((service.get("Meta") or {}).items())),
            node_address=node_address or "",
        )


@dataclass
class AppPlan:
    """The outcome for one app: its registrations, or why it has none / why tasks are left out."""

    app_id: str
    registrations: list[Registration] = field(default_factory=list)
    skip_reason: str | None = None
    skip_detail: str = ""
    task_problems: dict[str, tuple[str, str]] = field(default_factory=dict)  # task -> reason
    # RUNNING tasks whose health Marathon does not know (yet): not registered here; the daemon
    # keeps an instance it already holds for a while (--unknown-health-grace).
    health_unknown: set[str] = field(default_factory=set)


def is_owned(meta: Mapping[str, str] | None) -> bool:
    return all((meta or {}).get(k) == v for k, v in OWNER_META.items())


def node_name(host: str) -> str:
    return NODE_PREFIX + host


def service_name_for(app_id: str) -> str:
    """``/shop/web`` -> ``shop-web``: path separators and dots become dashes."""
    name = re.sub(r"[/.]+", "-", app_id.strip("/").lower())
    return re.sub(r"-{2,}", "-", name).strip("-")


def env_for(app: Mapping[str, Any], default_env: str | None) -> str | None:
    """The app's environment: its ``saltyard.env`` label, else the value of an
    ``["env", "CLUSTER"|"IS", value]`` constraint (the way apps are pinned to FAT/UAT/PROD
    agents), else the bridge's default. Marathon's API does not show agent attributes, so the
    constraint is the only place the task's agent ``env`` is visible from here."""
    label = (app.get("labels") or {}).get(LABEL_ENV)
    if label:
        return label
    for constraint in app.get("constraints") or []:
        if (
            isinstance(constraint, list | tuple)
            and len(constraint) == 3
            and constraint[0] == ENV_ATTRIBUTE
            and constraint[1] in ("CLUSTER", "IS")
            and constraint[2]
        ):
            return str(constraint[2])
    return default_env


def container_network(app: Mapping[str, Any]) -> str | None:
    """The name of the first container network the app joins (Marathon 1.5+: a ``networks``
    entry of mode ``container``; before 1.5: ``container.docker.network`` USER, unnamed: "");
    None when it has host or BRIDGE networking."""
    for network in app.get("networks") or []:
        if isinstance(network, Mapping) and network.get("mode", "container") == "container":
            return str(network.get("name") or "")
    docker = (app.get("container") or {}).get("docker") or {}
    if str(docker.get("network") or "").upper() == "USER":
        return ""
    return None


def port_mappings(app: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``container.portMappings`` (1.5+), else ``container.docker.portMappings``."""
    container = app.get("container") or {}
    mappings = container.get("portMappings")
    if mappings is None:
        mappings = (container.get("docker") or {}).get("portMappings")
    return [m for m in mappings or [] if isinstance(m, Mapping)]


def task_ipv4(task: Mapping[str, Any]) -> str | None:
    """The task's first IPv4 address in ``ipAddresses`` (None: Marathon shows none)."""
    for entry in task.get("ipAddresses") or []:
        if not isinstance(entry, Mapping) or entry.get("protocol", "IPv4") != "IPv4":
            continue
        address = parse_ipv4(str(entry.get("ipAddress") or ""))
        if address:
            return address
    return None


def container_port(
    mappings: list[Mapping[str, Any]], index: int, host_ports: list[Any]
) -> int | None:
    """The container port of mapping ``index``. ``containerPort`` 0 means the mapping's host
    port when it has one: the task's ``ports`` hold the host ports of the mappings that have
    one, in order. Without a host port, Marathon picks the container port at launch and does
    not show it: None."""
    mapping = mappings[index]
    port = mapping.get("containerPort") or 0
    if port:
        return int(port)
    if mapping.get("hostPort") is None:
        return None
    position = sum(1 for m in mappings[:index] if m.get("hostPort") is not None)
    return int(host_ports[position]) if position < len(host_ports) else None


HEALTHY, UNHEALTHY, UNKNOWN = "healthy", "unhealthy", "unknown"


def task_health(task: Mapping[str, Any], n_checks: int, current_config: bool) -> str:
    """HEALTHY: RUNNING, and every health check result alive. Tasks of the current
    configuration need a result for each of the app's checks; older tasks (mid-upgrade) are
    judged on the results they have, because their own version may have had other checks.

    UNKNOWN: RUNNING, no result says dead, but a result is missing. A new task looks like this
    until its first check, and so does every task right after Marathon restarts or changes
    leader: Marathon forgets health results and knows them again only after the next check.
    UNHEALTHY: anything else (not RUNNING, or a result that is not alive)."""
    if task.get("state") != "TASK_RUNNING":
        return UNHEALTHY
    results = task.get("healthCheckResults") or []
    if any(r.get("alive") is not True for r in results):
        return UNHEALTHY
    if not results or (current_config and len(results) < n_checks):
        return UNKNOWN
    return HEALTHY


def task_is_healthy(task: Mapping[str, Any], n_checks: int, current_config: bool) -> bool:
    return task_health(task, n_checks, current_config) == HEALTHY


def task_runs_current_config(app: Mapping[str, Any], task: Mapping[str, Any]) -> bool:
    """Whether the task was launched with the app's current configuration (only scaling may
    have happened since). Marathon versions are ISO timestamps of one format, so they compare
    as strings."""
    task_version = task.get("version") or ""
    changed = (app.get("versionInfo") or {}).get("lastConfigChangeAt")
    if changed:
        return task_version >= changed
    return task_version == app.get("version")


def desired_registrations(
    app: Mapping[str, Any],
    resolve: Callable[[str], str | None],
    default_env: str | None = None,
    environments: Collection[str] | None = None,
) -> AppPlan:
    """The registrations for ``app`` (with ``tasks`` embedded); ``resolve`` maps an agent host
    name to the IPv4 address the load balancers reach it on (None: unknown). With
    ``environments`` (the cluster's), an app in any other environment gets none.

    A task on host or BRIDGE networking is registered at its agent's address and its host port
    number ``saltyard.port-index``; a task on a container network at its own address (the first
    IPv4 address of its ``ipAddresses``) and the ``containerPort`` of the port mapping at that
    index. Either way the instance sits on its agent host's external node."""
    app_id = app["id"]
    plan = AppPlan(app_id)
    labels = app.get("labels") or {}
    checks = app.get("healthChecks") or []

    def skip(reason: str, detail: str) -> AppPlan:
        plan.skip_reason, plan.skip_detail = reason, detail
        return plan

    opted_in = str(labels.get(LABEL_NO_HEALTH_CHECKS, "")).lower() == "true"
    if not checks and not opted_in:
        return skip(
            NO_HEALTH_CHECKS,
            f"app {app_id} has no health checks: not registered (set the label "
            f"{LABEL_NO_HEALTH_CHECKS}=true to register its running tasks anyway)",
        )
    service = labels.get(LABEL_SERVICE) or service_name_for(app_id)
    if not SERVICE_NAME.match(service):
        return skip(
            BAD_LABEL,
            f"app {app_id}: service name {service!r} must be lowercase letters, digits and "
            f"dashes (set the label {LABEL_SERVICE})",
        )
    env = env_for(app, default_env)
    if not env:
        return skip(
            NO_ENV,
            f"app {app_id}: no environment (label {LABEL_ENV}, an "
            f'["{ENV_ATTRIBUTE}", "CLUSTER", ...] constraint or the bridge\'s --default-env)',
        )
    if environments is not None and env not in environments:
        return skip(
            UNKNOWN_ENV,
            f"app {app_id}: environment {env!r} is not one of the cluster's environments "
            f"({', '.join(environments)}; the inventory's cluster.environments)",
        )
    track = labels.get(LABEL_TRACK) or "stable"
    if track not in TRACKS:
        return skip(
            BAD_LABEL, f"app {app_id}: label {LABEL_TRACK}={track!r} must be one of {TRACKS}"
        )
    raw_index = labels.get(LABEL_PORT_INDEX, "0")
    if not str(raw_index).isdigit():
        return skip(
            BAD_LABEL, f"app {app_id}: label {LABEL_PORT_INDEX}={raw_index!r} is not a number"
        )
    port_index = int(raw_index)
    config_version = (app.get("versionInfo") or {}).get("lastConfigChangeAt") or app.get(
        "version", ""
    )
    # On a container network the load balancers reach the task itself: its own address and
    # the container port, not the agent's address and a host port (there may be none).
    network = container_network(app)
    mappings = port_mappings(app) if network is not None else []

    for task in app.get("tasks") or []:
        task_id, host = task.get("id"), task.get("host")
        if not task_id or not host:
            continue
        current = task_runs_current_config(app, task)
        if checks:
            health = task_health(task, len(checks), current)
            if health == UNKNOWN:
                plan.health_unknown.add(task_id)
            if health != HEALTHY:
                continue
        elif task.get("state") != "TASK_RUNNING":
            continue
        ports = task.get("ports") or []
        task_address: str | None = None
        if network is None:
            if port_index >= len(ports):
                plan.task_problems[task_id] = (
                    NO_PORT,
                    f"task {task_id} of {app_id} has {len(ports)} port(s), no port index "
                    f"{port_index}",
                )
                continue
            port = int(ports[port_index])
        else:
            on = f"on container network {network!r}" if network else "on a container network"
            if port_index >= len(mappings):
                plan.task_problems[task_id] = (
                    NO_PORT,
                    f"task {task_id} of {app_id} ({on}): the app has {len(mappings)} port "
                    f"mapping(s), no port index {port_index}",
                )
                continue
            found = container_port(mappings, port_index, ports)
            if not found:
                plan.task_problems[task_id] = (
                    NO_PORT,
                    f"task {task_id} of {app_id} ({on}): port mapping {port_index} has "
                    "containerPort 0 and no hostPort, so its port is chosen at launch and "
                    "Marathon does not show it; give the mapping a containerPort",
                )
                continue
            port = found
            task_address = task_ipv4(task)
            if not task_address:
                plan.task_problems[task_id] = (
                    NO_ADDRESS,
                    f"task {task_id} of {app_id} ({on}) has no IPv4 address in Marathon's "
                    "ipAddresses yet; registered once it has one",
                )
                continue
        host_address = resolve(host)
        if not host_address:
            plan.task_problems[task_id] = (
                UNRESOLVED_HOST,
                f"task {task_id} of {app_id}: agent host {host!r} has no IPv4 address "
                "(DNS or --host-address)",
            )
            continue
        # Only tasks of the current configuration can be tagged from the current labels; an
        # older one (mid-upgrade) is tagged with the Marathon version it was launched with.
        version = (labels.get(LABEL_VERSION) or config_version) if current else task["version"]
        tags = (
            f"env:{env}",
            f"version:{version}",
            f"track:{track}",
            f"marathon-task:{task_id}",
        )
        meta = {**OWNER_META, "marathon-app": app_id, "marathon-task": task_id}
        meta["marathon-host"] = host
        if network:
            meta["marathon-network"] = network
        plan.registrations.append(
            Registration(
                service_id=task_id,
                service=service,
                node=node_name(host),
                address=task_address or host_address,  # the task's own on a network
                port=port,
                tags=tuple(sorted(tags)),
                meta=tuple(sorted(meta.items())),
                node_address=host_address,
            )
        )
    return plan


def parse_ipv4(value: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None
