"""App definitions: id rules, validation (Marathon's 422 shape), defaults and versions.

Input may use the pre-1.5 shape (``container.docker.network`` / ``container.docker.portMappings``)
or the 1.5+ shape (``networks`` / ``container.portMappings``); the stored and rendered shape is
always the 1.5+ one. Only fields that the public ``marathon`` client library can parse are
rendered (its models reject unknown keys).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta

ID_SEGMENT = re.compile(
    r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$"
)
RESERVED_SEGMENTS = {"tasks", "versions", "restart"}
CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
DOCKER_NETWORKS = {
    "BRIDGE": "container/bridge",
    "HOST": "host",
    "USER": "container",
    "NONE": "none",
}
NETWORK_MODES = ("host", "container/bridge", "container", "none")
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
SERVICE_PORT_RANGE = (10000, 20000)

# Keys accepted on input and stored; everything else is dropped (as Marathon ignores them).
APP_KEYS = (
    "id",
    "cmd",
    "args",
    "user",
    "env",
    "instances",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "constraints",
    "fetch",
    "backoffSeconds",
    "backoffFactor",
    "maxLaunchDelaySeconds",
    "container",
    "healthChecks",
    "readinessChecks",
    "dependencies",
    "upgradeStrategy",
    "labels",
    "acceptedResourceRoles",
    "killSelection",
    "unreachableStrategy",
    "portDefinitions",
    "requirePorts",
    "taskKillGracePeriodSeconds",
    "networks",
    "role",
)

HEALTH_DEFAULTS = {
    "gracePeriodSeconds": 300,
    "intervalSeconds": 60,
    "timeoutSeconds": 20,
    "maxConsecutiveFailures": 3,
    "delaySeconds": 15,
}


class ValidationFailed(Exception):
    """A definition Marathon would refuse with 422 (or 400 for malformed input)."""

    def __init__(self, details: list[dict], message: str = "Object is not valid", status=422):
        super().__init__(message)
        self.message = message
        self.details = details
        self.status = status

    def body(self) -> dict:
        return {"message": self.message, "details": self.details}


def now_version(after: str | None = None) -> str:
    """An ISO-8601 UTC timestamp with milliseconds, strictly later than ``after``."""
    now = datetime.now(UTC)
    if after:
        prev = parse_ts(after)
        if now <= prev:
            now = prev + timedelta(milliseconds=1)
    return format_ts(now)


def format_ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise ValueError(f"bad timestamp {text!r}")


def canonical_id(raw: str) -> str:
    """``foo/bar`` or ``/foo/bar/`` -> ``/foo/bar`` (not validated)."""
    parts = [p for p in str(raw).strip().split("/") if p]
    return "/" + "/".join(parts)


def id_errors(app_id) -> list[str]:
    if not isinstance(app_id, str) or not app_id.strip("/"):
        return ["must not be empty"]
    errors = []
    for part in [p for p in app_id.split("/") if p]:
        if not ID_SEGMENT.match(part):
            errors.append(
                "must fully match regular expression "
                "'^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*"
                "([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])$' "
                f"(segment {part!r})"
            )
        elif part in RESERVED_SEGMENTS:
            errors.append(f"segment {part!r} is reserved by the API")
    return errors


def task_id_prefix(app_id: str) -> str:
    """Marathon's task id prefix: ``/foo/bar`` -> ``foo_bar``."""
    return app_id.strip("/").replace("/", "_")


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _string_map(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def upgrade_to_new_shape(body: dict) -> dict:
    """Rewrite the pre-1.5 docker network/portMappings shape into ``networks`` +
    ``container.portMappings`` (in a copy)."""
    body = copy.deepcopy(body)
    container = body.get("container")
    if isinstance(container, dict) and isinstance(container.get("docker"), dict):
        docker = container["docker"]
        network = docker.pop("network", None)
        mappings = docker.pop("portMappings", None)
        if network is not None:
            mode = DOCKER_NETWORKS.get(str(network).upper())
            body["networks"] = [{"mode": mode or f"invalid:{network}"}]
        if mappings is not None and "portMappings" not in container:
            container["portMappings"] = mappings
    return body


def validate(app: dict) -> None:
    """Raise ValidationFailed (422) listing every problem, with Marathon-style paths."""
    details: list[dict] = []

    def err(path: str, msg: str) -> None:
        for d in details:
            if d["path"] == path:
                d["errors"].append(msg)
                return
        details.append({"path": path, "errors": [msg]})

    for msg in id_errors(app.get("id")):
        err("/id", msg)
    if app.get("cmd") is not None and app.get("args") is not None:
        err("/", "AppDefinition must either contain one of 'cmd' or 'args', not both")
    if app.get("cmd") is not None and not isinstance(app["cmd"], str):
        err("/cmd", "must be a string")
    if app.get("args") is not None and not (
        isinstance(app["args"], list) and all(isinstance(a, str) for a in app["args"])
    ):
        err("/args", "must be an array of strings")
    container = app.get("container")
    if app.get("cmd") is None and app.get("args") is None and not container:
        err("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'")
    for key in ("instances",):
        v = app.get(key, 1)
        if not _is_int(v) or v < 0:
            err(f"/{key}", f"got {v}, expected 0 or more")
    for key in ("cpus", "mem", "disk", "gpus"):
        v = app.get(key, 0)
        if not _is_number(v) or v < 0:
            err(f"/{key}", f"got {v}, expected 0.0 or more")
    for key in ("env", "labels"):
        if key in app and app[key] is not None and not _string_map(app[key]):
            err(f"/{key}", "must be an object of string values")
    for key in ("backoffSeconds", "maxLaunchDelaySeconds"):
        v = app.get(key, 1)
        if not _is_number(v) or v < 0:
            err(f"/{key}", f"got {v}, expected 0 or more")
    v = app.get("backoffFactor", 1.15)
    if not _is_number(v) or v < 1:
        err("/backoffFactor", f"got {v}, expected 1.0 or more")
    if app.get("killSelection", "YOUNGEST_FIRST") not in KILL_SELECTIONS:
        err("/killSelection", f"must be one of {list(KILL_SELECTIONS)}")

    strategy = app.get("upgradeStrategy") or {}
    if not isinstance(strategy, dict):
        err("/upgradeStrategy", "must be an object")
        strategy = {}
    for key in ("minimumHealthCapacity", "maximumOverCapacity"):
        v = strategy.get(key, 1)
        if not _is_number(v) or not 0 <= v <= 1:
            err(f"/upgradeStrategy/{key}", f"got {v}, expected between 0.0 and 1.0")

    constraints = app.get("constraints") or []
    if not isinstance(constraints, list):
        err("/constraints", "must be an array")
        constraints = []
    for i, c in enumerate(constraints):
        path = f"/constraints({i})"
        if (
            not isinstance(c, list)
            or len(c) not in (2, 3)
            or not all(isinstance(x, str) for x in c)
        ):
            err(path, "Each constraint must be [field, operator] or [field, operator, value]")
            continue
        op = c[1]
        if op not in CONSTRAINT_OPERATORS:
            err(
                path,
                "Constraint operator must be one of the following: "
                + ", ".join(CONSTRAINT_OPERATORS),
            )
            continue
        value = c[2] if len(c) == 3 else None
        if op in ("LIKE", "UNLIKE", "IS") and value is None:
            err(path, f"{op} requires a value")
        if op in ("LIKE", "UNLIKE") and value is not None:
            try:
                re.compile(value)
            except re.error:
                err(path, f"'{value}' is not a valid regular expression")
        if op == "MAX_PER" and (value is None or not value.isdigit() or int(value) < 1):
            err(path, "MAX_PER requires a positive integer value")
        if op == "GROUP_BY" and value is not None and not value.isdigit():
            err(path, "GROUP_BY value must be an integer")

    networks = app.get("networks") or []
    if not isinstance(networks, list):
        err("/networks", "must be an array")
        networks = []
    for i, n in enumerate(networks):
        if not isinstance(n, dict) or n.get("mode", "container") not in NETWORK_MODES:
            err(f"/networks({i})", f"mode must be one of {list(NETWORK_MODES)}")
    container_net = any(
        isinstance(n, dict) and n.get("mode", "container") != "host" for n in networks
    )

    n_ports = 0
    if container is not None:
        if not isinstance(container, dict):
            err("/container", "must be an object")
        else:
            if container.get("type", "DOCKER") not in ("DOCKER", "MESOS"):
                err("/container/type", "must be DOCKER or MESOS")
            docker = container.get("docker")
            if (
                not isinstance(docker, dict)
                or not isinstance(docker.get("image"), str)
                or not docker["image"]
            ):
                err("/container/docker/image", "must not be empty")
            elif docker.get("parameters") is not None and not all(
                isinstance(p, dict) and "key" in p for p in docker["parameters"]
            ):
                err("/container/docker/parameters", "each parameter needs key and value")
            mappings = container.get("portMappings") or []
            if mappings and not container_net:
                err(
                    "/container/portMappings", "portMappings need a container (bridge/user) network"
                )
            for i, pm in enumerate(mappings if isinstance(mappings, list) else []):
                for key in ("containerPort", "hostPort", "servicePort"):
                    v = pm.get(key, 0) if isinstance(pm, dict) else None
                    if v is not None and (not _is_int(v) or not 0 <= v <= 65535):
                        err(f"/container/portMappings({i})/{key}", f"got {v}, expected 0..65535")
            n_ports = len(mappings) if isinstance(mappings, list) else 0
    if not container_net:
        pds = app.get("portDefinitions")
        if pds is None:
            pds = [{"port": 0}]
        if not isinstance(pds, list):
            err("/portDefinitions", "must be an array")
            pds = []
        for i, pd in enumerate(pds):
            v = pd.get("port", 0) if isinstance(pd, dict) else None
            if not _is_int(v) or not 0 <= v <= 65535:
                err(f"/portDefinitions({i})/port", f"got {v}, expected 0..65535")
        n_ports = len(pds)
    elif app.get("portDefinitions"):
        err("/portDefinitions", "portDefinitions must be empty with container networking")

    health_checks = app.get("healthChecks") or []
    if not isinstance(health_checks, list):
        err("/healthChecks", "must be an array")
        health_checks = []
    for i, hc in enumerate(health_checks):
        path = f"/healthChecks({i})"
        if not isinstance(hc, dict):
            err(path, "must be an object")
            continue
        proto = hc.get("protocol", "HTTP")
        if proto not in HEALTH_PROTOCOLS:
            err(f"{path}/protocol", f"must be one of {list(HEALTH_PROTOCOLS)}")
        if proto in ("COMMAND",):
            if not isinstance(hc.get("command"), dict | str):
                err(f"{path}/command", "COMMAND health checks need a command")
            continue
        if "port" in hc and hc["port"] is not None:
            if not _is_int(hc["port"]) or not 0 < hc["port"] <= 65535:
                err(f"{path}/port", "must be a port number")
            continue
        idx = hc.get("portIndex", 0)
        if not _is_int(idx) or idx < 0 or idx >= n_ports:
            err(
                path,
                "Health check port indices must address an element of the ports array "
                "or container port mappings.",
            )
        for key in (
            "gracePeriodSeconds",
            "intervalSeconds",
            "timeoutSeconds",
            "maxConsecutiveFailures",
        ):
            v = hc.get(key, 1)
            if not _is_number(v) or v < 0:
                err(f"{path}/{key}", f"got {v}, expected 0 or more")
    if details:
        raise ValidationFailed(details)


def normalize(raw: dict, previous: dict | None, used_service_ports: set[int]) -> dict:
    """Apply Marathon's defaults and assign service ports (keeping ``previous``'s by index).

    ``raw`` must already be validated. ``used_service_ports`` is updated in place.
    """
    app = {k: copy.deepcopy(raw[k]) for k in APP_KEYS if k in raw and raw[k] is not None}
    app["id"] = canonical_id(app["id"])
    app.setdefault("instances", 1)
    app.setdefault("cpus", 1.0)
    app.setdefault("mem", 128.0)
    app.setdefault("disk", 0.0)
    app.setdefault("gpus", 0)
    app.setdefault("env", {})
    app.setdefault("labels", {})
    app.setdefault("constraints", [])
    app.setdefault("fetch", [])
    app.setdefault("backoffSeconds", 1)
    app.setdefault("backoffFactor", 1.15)
    app.setdefault("maxLaunchDelaySeconds", 300)
    app.setdefault("dependencies", [])
    app.setdefault("readinessChecks", [])
    app.setdefault("killSelection", "YOUNGEST_FIRST")
    app.setdefault("requirePorts", False)
    app.setdefault("unreachableStrategy", {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    strategy = dict(app.get("upgradeStrategy") or {})
    strategy.setdefault("minimumHealthCapacity", 1.0)
    strategy.setdefault("maximumOverCapacity", 1.0)
    app["upgradeStrategy"] = strategy
    networks = app.get("networks") or [{"mode": "host"}]
    app["networks"] = networks
    container_net = any(n.get("mode", "container") != "host" for n in networks)

    prev_service_ports: list[int] = []
    if previous:
        if previous.get("container", {}).get("portMappings"):
            prev_service_ports = [
                pm.get("servicePort", 0) for pm in previous["container"]["portMappings"]
            ]
        else:
            prev_service_ports = [pd.get("port", 0) for pd in previous.get("portDefinitions", [])]
        used_service_ports.difference_update(prev_service_ports)

    def assign(index: int, wanted: int) -> int:
        if wanted:
            used_service_ports.add(wanted)
            return wanted
        if index < len(prev_service_ports) and prev_service_ports[index] not in used_service_ports:
            port = prev_service_ports[index]
        else:
            port = next(p for p in range(*SERVICE_PORT_RANGE) if p not in used_service_ports)
        used_service_ports.add(port)
        return port

    container = app.get("container")
    if container:
        container.setdefault("type", "DOCKER")
        docker = container.setdefault("docker", {})
        docker.setdefault("forcePullImage", False)
        docker.setdefault("privileged", False)
        docker.setdefault("parameters", [])
        container.setdefault("volumes", [])
        mappings = []
        for i, pm in enumerate(container.get("portMappings") or []):
            pm = dict(pm)
            pm.setdefault("containerPort", 0)
            pm.setdefault("hostPort", 0)
            pm.setdefault("protocol", "tcp")
            pm.setdefault("labels", {})
            pm["servicePort"] = assign(i, pm.get("servicePort", 0) or 0)
            mappings.append(pm)
        if container_net:
            container["portMappings"] = mappings
        else:
            container.pop("portMappings", None)
    if container_net:
        app["portDefinitions"] = []
    else:
        pds = app.get("portDefinitions")
        if pds is None:
            pds = [{"port": 0, "protocol": "tcp", "name": "default"}]
        out = []
        for i, pd in enumerate(pds):
            pd = dict(pd)
            pd.setdefault("protocol", "tcp")
            pd.setdefault("labels", {})
            pd["port"] = assign(i, pd.get("port", 0) or 0)
            out.append(pd)
        app["portDefinitions"] = out

    checks = []
    for hc in app.get("healthChecks") or []:
        hc = dict(hc)
        hc.setdefault("protocol", "HTTP")
        for k, v in HEALTH_DEFAULTS.items():
            hc.setdefault(k, v)
        if hc["protocol"] == "COMMAND":
            if isinstance(hc.get("command"), str):
                hc["command"] = {"value": hc["command"]}
        else:
            if hc.get("port") is None:
                hc.pop("port", None)
                hc.setdefault("portIndex", 0)
            if hc["protocol"] in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"):
                hc.setdefault("path", "/")
                hc.setdefault("ignoreHttp1xx", False)
        checks.append(hc)
    app["healthChecks"] = checks
    return app


def config_view(app: dict) -> dict:
    """The parts of a definition whose change needs new tasks (everything but instances and
    version bookkeeping)."""
    return {k: v for k, v in app.items() if k not in ("instances", "version", "versionInfo")}


def port_count(app: dict) -> int:
    mappings = (app.get("container") or {}).get("portMappings")
    if mappings:
        return len(mappings)
    return len(app.get("portDefinitions") or [])


def network_mode(app: dict) -> str:
    return (app.get("networks") or [{"mode": "host"}])[0].get("mode", "container")
