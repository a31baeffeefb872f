"""App definitions in the emulator: Marathon's 422 answer, defaults, service ports and versions.

The id canonicaliser, the shape normaliser and the validation rules themselves are shared with
the client and the Salt state: they live in ``saltyard.marathon_appdef``.

Input may use the pre-1.5 shape (``container.docker.network`` / ``container.docker.portMappings``)
or the 1.5+ shape (``networks`` / ``container.portMappings``); the stored and rendered shape is
always the 1.5+ one. Only fields that the public ``marathon`` client library can parse are
rendered (its models reject unknown keys).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from saltyard import marathon_appdef
from saltyard.marathon_appdef import canonical_id
from saltyard.marathon_constraints import UNRESERVED

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


def id_errors(app_id) -> list[str]:
    return [e.message for e in marathon_appdef.app_id_errors(app_id)]


def task_id_prefix(app_id: str) -> str:
    """Marathon's task id prefix: ``/foo/bar`` -> ``foo_bar``."""
    return app_id.strip("/").replace("/", "_")


def validate(app: dict, mesos_role: str = UNRESERVED) -> None:
    """Raise ValidationFailed (422) listing every problem, with Marathon-style paths.

    The rules are the shared ones (``saltyard.marathon_appdef.validate_app``) and this
    emulator's own (a container network's name, the roles it is offered); this groups them into
    Marathon's ``details: [{path, errors}]``.
    """
    details: list[dict] = []
    by_path: dict[str, list[str]] = {}
    errors = (
        marathon_appdef.validate_app(app)
        + network_name_errors(app)
        + offered_role_errors(app, mesos_role)
    )
    for error in errors:
        if error.path not in by_path:
            by_path[error.path] = []
            details.append({"path": error.path, "errors": by_path[error.path]})
        by_path[error.path].append(error.message)
    if details:
        raise ValidationFailed(details)


def network_name_errors(app: dict) -> list[marathon_appdef.AppDefinitionError]:
    """A container network needs a name: Marathon takes an unnamed one's from its
    ``--default_network_name``, which this emulator does not have (Marathon without it refuses
    the app the same way)."""
    networks = app.get("networks")
    if not isinstance(networks, list):
        return []
    return [
        marathon_appdef.AppDefinitionError(
            f"/networks({i})",
            f"networks({i}): a container network needs a name (the emulator has no "
            "--default_network_name)",
        )
        for i, n in enumerate(networks)
        if isinstance(n, dict) and n.get("mode", "container") == "container" and not n.get("name")
    ]


def offered_role_errors(app: dict, mesos_role: str) -> list[marathon_appdef.AppDefinitionError]:
    """Marathon is offered unreserved resources and those of the role it registered with
    (--mesos_role): an app that accepts another role could never start, so Marathon refuses it."""
    roles = app.get("acceptedResourceRoles")
    if not isinstance(roles, list):
        return []
    offered = {UNRESERVED, mesos_role}
    return [
        marathon_appdef.AppDefinitionError(
            "/acceptedResourceRoles",
            f"acceptedResourceRoles: role {role!r} is never offered to Marathon: it accepts only "
            f"{' and '.join(repr(r) for r in sorted(offered))} (its --mesos_role)",
        )
        for role in roles
        if isinstance(role, str) and role not in offered
    ]


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
    # Marathon's default mode is ``container``, and it says so in its answers.
    networks = [{**n, "mode": n.get("mode", "container")} for n in app.get("networks") or []]
    app["networks"] = networks or [{"mode": "host"}]
    container_net = any(n["mode"] != "host" for n in app["networks"])
    # On container networks a port mapping without hostPort takes no host port (on BRIDGE a
    # missing hostPort means 0, a random one).
    named_net = any(n["mode"] == "container" for n in networks)

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
        given = container.get("portMappings")
        if given is None and named_net:
            # Marathon's default for container networks: one container port (chosen at launch,
            # the task's $PORT0), no host port. An empty list means no ports.
            given = [{"containerPort": 0, "name": "default"}]
        for i, pm in enumerate(given or []):
            pm = dict(pm)
            pm.setdefault("containerPort", 0)
            if named_net:
                if pm.get("hostPort") is None:
                    pm.pop("hostPort", None)
            else:
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
