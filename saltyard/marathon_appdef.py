"""Marathon's app-definition rules, shared by the client, the Salt module and state, and the
emulator: one app-id canonicaliser, one definition-shape normaliser, and the validation Marathon
answers with 422, all without HTTP.

Both definition shapes are accepted: 1.5+ (``networks``, ``container.portMappings``) and
pre-1.5 (``container.docker.network``, ``container.docker.portMappings``).
``upgrade_to_new_shape`` rewrites the second into the first, the one Marathon answers with.

Only the standard library is imported here, so the Salt state and module can use these rules on
any minion that has the saltyard package, and nothing here depends on the client or the emulator.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from saltyard import marathon_constraints

# The pre-1.5 ``container.docker.network`` values and the 1.5+ network mode each stands for.
DOCKER_NETWORK_MODES = {
    "BRIDGE": "container/bridge",
    "HOST": "host",
    "USER": "container",
    "NONE": "none",
}


def canonical_id(raw: Any) -> str:
    """``foo/bar``, ``/foo//bar/`` or `` /foo/bar `` -> ``/foo/bar`` (not validated: an id made
    only of slashes gives ``/``, which ``app_id_errors`` refuses)."""
    parts = [p for p in str(raw).strip().split("/") if p]
    return "/" + "/".join(parts)


def upgrade_to_new_shape(body: dict) -> dict:
    """Rewrite the pre-1.5 docker network/portMappings shape into ``networks`` +
    ``container.portMappings`` (in a copy; ``body`` is left as it is).

    A ``container.docker.network`` replaces any ``networks`` (it is the more specific of the
    two); an unknown network becomes mode ``invalid:NAME``, which validation refuses naming it.
    """
    body = copy.deepcopy(body)
    container = body.get("container")
    if isinstance(container, dict) and isinstance(container.get("docker"), dict):
        docker = container["docker"]
        network = docker.pop("network", None)
        mappings = docker.pop("portMappings", None)
        if network is not None:
            mode = DOCKER_NETWORK_MODES.get(str(network).upper())
            body["networks"] = [{"mode": mode or f"invalid:{network}"}]
        if mappings is not None and "portMappings" not in container:
            container["portMappings"] = mappings
    return body


# ---------------------------------------------------------------------- validation
#
# What Marathon refuses with 422, checked locally. The emulator answers with these rules and the
# Salt module reports them before sending anything, so they live only here.

APP_ID_SEGMENT = re.compile(
    r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$"
)
# The API's own path words; Marathon cannot address an app with such a segment.
RESERVED_ID_SEGMENTS = ("tasks", "versions", "restart")
CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
DOCKER_NETWORKS = tuple(DOCKER_NETWORK_MODES)
NETWORK_MODES = ("host", "container/bridge", "container", "none")
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
CONTAINER_TYPES = ("DOCKER", "MESOS")


@dataclass(frozen=True)
class AppDefinitionError:
    """One problem: ``path`` in Marathon's notation (``/constraints(0)``), ``message`` naming
    the field and the offending value."""

    path: str
    message: str

    def __str__(self) -> str:
        return self.message


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_port(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= 65535


def app_id_errors(app_id: Any, path: str = "/id") -> list[AppDefinitionError]:
    """Marathon's app id syntax: non-empty, every segment matching APP_ID_SEGMENT, none
    reserved."""
    if not isinstance(app_id, str) or not app_id.strip("/"):
        return [AppDefinitionError(path, f"id {app_id!r}: must not be empty")]
    errors = []
    for segment in (p for p in app_id.split("/") if p):
        if not APP_ID_SEGMENT.match(segment):
            errors.append(
                AppDefinitionError(
                    path,
                    f"id {app_id!r}: segment {segment!r} must fully match regular expression "
                    f"'{APP_ID_SEGMENT.pattern}' (lowercase letters, digits, '-' and '.', "
                    "not starting or ending with '-')",
                )
            )
        elif segment in RESERVED_ID_SEGMENTS:
            errors.append(
                AppDefinitionError(
                    path, f"id {app_id!r}: segment {segment!r} is reserved by the Marathon API"
                )
            )
    return errors


def validate_app(app: Any) -> list[AppDefinitionError]:
    """Every problem Marathon would refuse ``app`` for (an empty list: none found).

    Covers id syntax and reserved segments, cmd/args/container, negative instances and
    resources, backoff, killSelection, non-string env/labels, upgradeStrategy outside 0..1,
    the container type and image, constraint operators and values, network modes (and no mix
    of them), port numbers, port mappings without container networking, a hostPort with several
    container networks, acceptedResourceRoles that are not role names, and health checks
    (protocol, timings, portIndex against the ports). Not exhaustive: Marathon may refuse more.
    """
    if not isinstance(app, dict):
        return [AppDefinitionError("/", f"app definition {app!r}: must be an object")]
    errors = app_id_errors(app.get("id"))

    def add(path: str, message: str) -> None:
        errors.append(AppDefinitionError(path, message))

    cmd, args = app.get("cmd"), app.get("args")
    if cmd is not None and args is not None:
        add("/", f"cmd {cmd!r} and args {args!r}: give one of them, not both")
    if cmd is not None and not isinstance(cmd, str):
        add("/cmd", f"cmd {cmd!r}: must be a string")
    if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        add("/args", f"args {args!r}: must be an array of strings")
    if cmd is None and args is None and not app.get("container"):
        add("/", "cmd, args and container are all missing: the app needs cmd, args or a container")

    def at_least(key: str, default: Any, low: float, integer: bool = False) -> None:
        value = app.get(key, default)
        if not (_is_int(value) if integer else _is_number(value)) or value < low:
            kind = "an integer" if integer else "a number"
            add(f"/{key}", f"{key} {value!r}: expected {low} or more ({kind})")

    at_least("instances", 1, 0, integer=True)
    for key in ("cpus", "mem", "disk", "gpus"):
        at_least(key, 0, 0)
    for key in ("backoffSeconds", "maxLaunchDelaySeconds"):
        at_least(key, 1, 0)
    at_least("backoffFactor", 1.15, 1)
    kill = app.get("killSelection", "YOUNGEST_FIRST")
    if kill not in KILL_SELECTIONS:
        add(
            "/killSelection", f"killSelection {kill!r}: must be one of {', '.join(KILL_SELECTIONS)}"
        )

    for key in ("env", "labels"):
        value = app.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            add(f"/{key}", f"{key} {value!r}: must be an object of string values")
            continue
        for k, v in value.items():
            # YAML turns true/1/1.0 into non-strings; Marathon refuses them.
            if not isinstance(k, str) or not isinstance(v, str):
                add(f"/{key}", f"{key}[{k!r}] {v!r}: must be a string (quote it in YAML)")

    strategy = app.get("upgradeStrategy")
    if strategy is not None and not isinstance(strategy, dict):
        add("/upgradeStrategy", f"upgradeStrategy {strategy!r}: must be an object")
    elif strategy is not None:
        for key in ("minimumHealthCapacity", "maximumOverCapacity"):
            v = strategy.get(key, 1)
            if not _is_number(v) or not 0 <= v <= 1:
                add(
                    f"/upgradeStrategy/{key}",
                    f"upgradeStrategy.{key} {v!r}: must be between 0.0 and 1.0",
                )

    container = app.get("container")
    if container is not None and not isinstance(container, dict):
        add("/container", f"container {container!r}: must be an object")
    elif container is not None:
        ctype = container.get("type", "DOCKER")
        if ctype not in CONTAINER_TYPES:
            add("/container/type", f"container.type {ctype!r}: must be DOCKER or MESOS")
        docker = container.get("docker")
        image = docker.get("image") if isinstance(docker, dict) else None
        if not isinstance(image, str) or not image.strip():
            add("/container/docker/image", f"container.docker.image {image!r}: must not be empty")
        params = docker.get("parameters") if isinstance(docker, dict) else None
        if params is not None and not (
            isinstance(params, list) and all(isinstance(p, dict) and "key" in p for p in params)
        ):
            add(
                "/container/docker/parameters",
                f"container.docker.parameters {params!r}: each parameter needs key and value",
            )

    errors += _constraint_errors(app.get("constraints"))
    errors += _accepted_roles_errors(app.get("acceptedResourceRoles"))
    container_net, n_ports = _network_and_ports(app, errors)
    errors += _health_check_errors(app.get("healthChecks"), n_ports, container_net)
    return errors


def _accepted_roles_errors(roles: Any) -> list[AppDefinitionError]:
    """acceptedResourceRoles: a non-empty list of role names (Marathon refuses an empty one)."""
    if roles is None:
        return []
    path = "/acceptedResourceRoles"
    if not isinstance(roles, list) or not roles:
        return [
            AppDefinitionError(
                path, f"acceptedResourceRoles {roles!r}: must be a non-empty array of role names"
            )
        ]
    return [
        AppDefinitionError(path, f"acceptedResourceRoles: {error}")
        for error in map(marathon_constraints.role_error, roles)
        if error
    ]


def _constraint_errors(constraints: Any) -> list[AppDefinitionError]:
    if constraints is None:
        return []
    if not isinstance(constraints, list):
        return [
            AppDefinitionError(
                "/constraints",
                f"constraints {constraints!r}: must be an array of [field, operator(, value)]",
            )
        ]
    errors = []
    for i, c in enumerate(constraints):
        path = f"/constraints({i})"
        where = f"constraints({i}) {c!r}"
        if (
            not isinstance(c, list | tuple)
            or len(c) not in (2, 3)
            or not all(isinstance(x, str) for x in c)
        ):
            errors.append(AppDefinitionError(path, f"{where}: must be [field, operator(, value)]"))
            continue
        op, value = c[1], (c[2] if len(c) == 3 else None)
        if op not in CONSTRAINT_OPERATORS:
            errors.append(
                AppDefinitionError(
                    path,
                    f"{where}: operator {op!r} must be one of {', '.join(CONSTRAINT_OPERATORS)}",
                )
            )
            continue
        if op in ("LIKE", "UNLIKE", "IS") and value is None:
            errors.append(AppDefinitionError(path, f"{where}: {op} requires a value"))
        if op in ("LIKE", "UNLIKE") and value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                errors.append(
                    AppDefinitionError(
                        path, f"{where}: {value!r} is not a valid regular expression ({exc})"
                    )
                )
        if op == "MAX_PER" and (value is None or not value.isdigit() or int(value) < 1):
            errors.append(
                AppDefinitionError(
                    path, f"{where}: MAX_PER requires a positive integer value, got {value!r}"
                )
            )
        if op == "GROUP_BY" and value is not None and not value.isdigit():
            errors.append(
                AppDefinitionError(
                    path, f"{where}: GROUP_BY value must be an integer, got {value!r}"
                )
            )
    return errors


def _network_and_ports(app: dict, errors: list[AppDefinitionError]) -> tuple[bool, int]:
    """Check networks and ports; return whether the app uses container networking and how many
    ports a health check's portIndex may address."""
    container = app.get("container") if isinstance(app.get("container"), dict) else {}
    docker = container.get("docker") if isinstance(container.get("docker"), dict) else {}

    def add(path: str, message: str) -> None:
        errors.append(AppDefinitionError(path, message))

    container_net = False
    networks = app.get("networks")
    if networks is not None and not isinstance(networks, list):
        add("/networks", f"networks {networks!r}: must be an array")
        networks = []
    modes = []
    for i, n in enumerate(networks or []):
        mode = n.get("mode", "container") if isinstance(n, dict) else None
        if mode not in NETWORK_MODES:
            add(
                f"/networks({i})",
                f"networks({i}) mode {mode!r}: must be one of {', '.join(NETWORK_MODES)}",
            )
            continue
        modes.append(mode)
        if mode != "host":
            container_net = True
    # One host network, or one container/bridge network, or any number of container networks.
    if len(set(modes)) > 1 or (len(modes) > 1 and modes[0] != "container"):
        add(
            "/networks",
            f"networks modes {modes!r}: an app joins one host network, one container/bridge "
            "network, or one or more container networks, never a mix",
        )
    network = docker.get("network")
    if network is not None:
        if str(network).upper() not in DOCKER_NETWORKS:
            add(
                "/container/docker/network",
                f"container.docker.network {network!r}: must be one of "
                f"{', '.join(DOCKER_NETWORKS)}",
            )
        elif str(network).upper() in ("BRIDGE", "USER"):
            container_net = True

    mappings, path = container.get("portMappings"), "/container/portMappings"
    if mappings is None:
        mappings, path = docker.get("portMappings"), "/container/docker/portMappings"
    name = path.strip("/").replace("/", ".")
    mappings = mappings or []
    if not isinstance(mappings, list):
        add(path, f"{name} {mappings!r}: must be an array")
        mappings = []
    several = modes.count("container") > 1
    for i, pm in enumerate(mappings):
        if not isinstance(pm, dict):
            add(f"{path}({i})", f"{name}({i}) {pm!r}: must be an object")
            continue
        for key in ("containerPort", "hostPort", "servicePort"):
            v = pm.get(key)
            if v is not None and not _is_port(v):
                add(f"{path}({i})/{key}", f"{name}({i}).{key} {v!r}: expected a port 0..65535")
        if several and pm.get("hostPort") is not None:
            add(
                f"{path}({i})/hostPort",
                f"{name}({i}).hostPort {pm['hostPort']!r}: must not be given when the app joins "
                "several container networks",
            )

    definitions = app.get("portDefinitions")
    if container_net:
        if definitions:
            add(
                "/portDefinitions",
                f"portDefinitions {definitions!r}: must be empty with container (BRIDGE/USER) "
                "networking",
            )
        return True, len(mappings)
    if mappings:
        add(path, f"{name}: port mappings need container (BRIDGE/USER) networking")
    if definitions is None:
        return False, 1  # Marathon gives a host-networked app one port by default
    if not isinstance(definitions, list):
        add("/portDefinitions", f"portDefinitions {definitions!r}: must be an array")
        return False, 0
    for i, pd in enumerate(definitions):
        v = pd.get("port", 0) if isinstance(pd, dict) else None
        if not _is_port(v):
            add(
                f"/portDefinitions({i})/port",
                f"portDefinitions({i}).port {v!r}: expected a port 0..65535",
            )
    return False, len(definitions)


def _health_check_errors(
    checks: Any, n_ports: int, container_net: bool
) -> list[AppDefinitionError]:
    if checks is None:
        return []
    if not isinstance(checks, list):
        return [AppDefinitionError("/healthChecks", f"healthChecks {checks!r}: must be an array")]
    errors = []

    def add(path: str, message: str) -> None:
        errors.append(AppDefinitionError(path, message))

    what = "port mapping(s)" if container_net else "port(s)"
    for i, hc in enumerate(checks):
        path, where = f"/healthChecks({i})", f"healthChecks({i})"
        if not isinstance(hc, dict):
            add(path, f"{where} {hc!r}: must be an object")
            continue
        proto = hc.get("protocol", "HTTP")
        if proto not in HEALTH_PROTOCOLS:
            add(
                f"{path}/protocol",
                f"{where}.protocol {proto!r}: must be one of {', '.join(HEALTH_PROTOCOLS)}",
            )
        for key in ("gracePeriodSeconds", "intervalSeconds", "timeoutSeconds"):
            v = hc.get(key, 0)
            if not _is_number(v) or v < 0:
                add(f"{path}/{key}", f"{where}.{key} {v!r}: expected 0 or more")
        v = hc.get("maxConsecutiveFailures", 0)
        if not _is_int(v) or v < 0:
            add(
                f"{path}/maxConsecutiveFailures",
                f"{where}.maxConsecutiveFailures {v!r}: expected 0 or more (an integer)",
            )
        if proto == "COMMAND":
            if not isinstance(hc.get("command"), dict | str):
                add(f"{path}/command", f"{where}.command: COMMAND health checks need a command")
            continue
        if hc.get("port") is not None:
            if not _is_int(hc["port"]) or not 0 < hc["port"] <= 65535:
                add(f"{path}/port", f"{where}.port {hc['port']!r}: expected a port 1..65535")
            continue
        idx = hc.get("portIndex", 0)
        if not _is_int(idx) or not 0 <= idx < n_ports:
            # Marathon reports this one on the health check itself, not on /portIndex.
            add(
                path,
                f"{where}.portIndex {idx!r}: out of range, the app has {n_ports} {what} "
                "(health check port indices must address an element of the ports array or "
                "container port mappings)",
            )
    return errors
