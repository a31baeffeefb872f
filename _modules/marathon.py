"""
Marathon apps, tasks and deployments, through saltyard's Marathon client.

A thin adapter over ``saltyard.clients.marathon.MarathonClient``: every function builds a client
from the configured URL, calls it, and turns the client's errors into CommandExecutionError
carrying Marathon's message and details. No HTTP code lives here.

Salt ships its own ``marathon`` execution module; this one has the same virtual name on purpose,
so that syncing ``_modules`` replaces it on saltyard minions.

Configuration (minion config, grains or pillar, read with ``config.get``), or ``url=`` on any
function::

    marathon:
      url: http://marathon.service:8080   # may carry credentials: http://user:pass@host:8080
      username: ops                        # optional HTTP basic auth
      password: secret
      verify: true                         # TLS verification, or a CA bundle path

``validate`` checks a definition locally, before anything is sent to Marathon.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard.clients import marathon as marathon_client

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "marathon"

# Marathon's id segment rule: lowercase letters, digits, '-' and '.', no '-' at either end of a
# dot-separated label. The emulator also reserves the API's own path words as segments.
_ID_SEGMENT_RE = re.compile(
    r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$"
)
_RESERVED_SEGMENTS = ("tasks", "versions", "restart")
_CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
_HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
_DOCKER_NETWORKS = ("BRIDGE", "HOST", "USER", "NONE")
_NETWORK_MODES = ("host", "container/bridge", "container", "none")


def __virtual__() -> str | tuple[bool, str]:
    # Everything here goes through saltyard's client; without the package there is no client.
    if not HAS_SALTYARD:
        return (
            False,
            "marathon: the saltyard package (saltyard.clients.marathon) is not importable",
        )
    return __virtualname__


# ---------------------------------------------------------------------- plumbing


def _client(url: str | None = None) -> marathon_client.MarathonClient:
    url = url or __salt__["config.get"]("marathon:url")
    if not url:
        raise CommandExecutionError(
            "no Marathon URL: pass url=... or set marathon:url in the minion config or pillar"
        )
    # Credentials embedded in the URL are moved into the session's auth, so they never appear
    # in error messages (the client puts the request URL into every error).
    parts = urllib.parse.urlsplit(url)
    auth = None
    if parts.username is not None:
        auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        # rpartition keeps the host as written (IPv6 brackets, port).
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    username = __salt__["config.get"]("marathon:username")
    if username:
        auth = (username, __salt__["config.get"]("marathon:password", "") or "")
    verify = __salt__["config.get"]("marathon:verify", True)
    return marathon_client.MarathonClient(url, auth=auth, verify=verify)


def _call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except marathon_client.MarathonConflict as exc:
        held = ", ".join(i for i in exc.deployment_ids if i)
        hint = f" (held by deployment(s) {held}; force=True cancels them)" if held else ""
        raise CommandExecutionError(f"{exc}{hint}") from exc
    except marathon_client.MarathonError as exc:
        # str(exc) already joins Marathon's message with each {path, errors} detail.
        raise CommandExecutionError(str(exc)) from exc
    except ValueError as exc:  # the client's own argument checks (empty id, instances < 0)
        raise CommandExecutionError(str(exc)) from exc


def _ref(ref: Any) -> dict[str, Any]:
    # DeploymentRef is a dataclass; Salt's outputters and the event bus need plain data.
    return {"deploymentId": ref.deployment_id, "version": ref.version}


# ---------------------------------------------------------------------- server


def info(url: str | None = None) -> dict[str, Any]:
    """
    Return Marathon's ``/v2/info`` (name, version, leader, configuration).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.info
    """
    return _call(_client(url).info)


def leader(url: str | None = None) -> str | None:
    """
    Return the leading Marathon as ``host:port``, or None while there is no leader.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.leader
    """
    return _call(_client(url).leader)


# ---------------------------------------------------------------------- apps


def apps(url: str | None = None) -> list[dict[str, Any]]:
    """
    Return every app definition (with Marathon's status counters).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.apps
    """
    return _call(_client(url).list_apps)


def app(app_id: str, url: str | None = None) -> dict[str, Any]:
    """
    Return one app; raises CommandExecutionError (Marathon's "does not exist") if it is absent.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.app /web
    """
    return _call(_client(url).get_app, app_id)


def exists(app_id: str, url: str | None = None) -> bool:
    """
    Return True if the app exists.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.exists /web
    """
    return _call(_client(url).app_exists, app_id)


def create(app: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """
    Create an app from a full definition (``app['id']`` names it). Fails if the id exists.

    Returns the created app, including ``deployments`` (the deployment starting it) and
    ``version``.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.create '{"id": "/web", "cmd": "python3 -m http.server $PORT0"}'
    """
    return _call(_client(url).create_app, app)


def update(
    app_id: str, app: dict[str, Any], force: bool = False, url: str | None = None
) -> dict[str, Any]:
    """
    Apply a (partial) definition to an app; Marathon creates the app if it does not exist.

    The fields given replace the stored ones. ``force=True`` cancels a deployment holding the
    app. Returns ``{'deploymentId': ..., 'version': ...}``.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.update /web '{"env": {"LOG_LEVEL": "debug"}}'
    """
    return _ref(_call(_client(url).update_app, app_id, app, force=force))


def delete(app_id: str, force: bool = False, url: str | None = None) -> dict[str, Any]:
    """
    Delete an app (its tasks are killed by the returned deployment).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.delete /web
    """
    return _ref(_call(_client(url).delete_app, app_id, force=force))


def restart(app_id: str, force: bool = False, url: str | None = None) -> dict[str, Any]:
    """
    Replace every task of an app with a fresh one (a rolling restart under its upgradeStrategy).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.restart /web
    """
    return _ref(_call(_client(url).restart_app, app_id, force=force))


def scale(
    app_id: str, instances: int, force: bool = False, url: str | None = None
) -> dict[str, Any]:
    """
    Set an app's instance count (no running task is replaced).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.scale /web 3
    """
    # The CLI hands over strings; Marathon would reject "3" as the wrong JSON type.
    try:
        count = int(instances)
    except (TypeError, ValueError):
        raise CommandExecutionError(f"instances must be an integer, got {instances!r}") from None
    if count < 0:
        raise CommandExecutionError(f"instances must be 0 or more, got {count}")
    return _ref(_call(_client(url).scale_app, app_id, count, force=force))


# ---------------------------------------------------------------------- tasks


def tasks(app_id: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """
    Return the tasks of one app, or of every app when ``app_id`` is not given.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.tasks /web
    """
    return _call(_client(url).list_tasks, app_id)


def kill_task(
    app_id: str, task_id: str, scale: bool = False, force: bool = False, url: str | None = None
) -> dict[str, Any]:
    """
    Kill one task. Without ``scale`` Marathon starts a replacement and the killed task is
    returned; with ``scale=True`` instances go down by one and the deployment is returned.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.kill_task /web web.0b5c6f1e-... scale=True
    """
    result = _call(_client(url).kill_task, app_id, task_id, scale=scale, force=force)
    return result if isinstance(result, dict) else _ref(result)


# ---------------------------------------------------------------------- deployments


def deployments(url: str | None = None) -> list[dict[str, Any]]:
    """
    Return the running deployments.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.deployments
    """
    return _call(_client(url).list_deployments)


def wait_for_deployment(
    deployment_id: str,
    timeout: float = 300,
    app_id: str | None = None,
    version: str | None = None,
    interval: float = 1.0,
    url: str | None = None,
) -> bool:
    """
    Wait until a deployment is finished; return True.

    With ``app_id`` (and the ``version`` the deployment was for) the outcome is checked, and a
    failure names Marathon's reason: the current step, healthy/running counts and the app's
    last task failure. Raises CommandExecutionError on timeout or failure.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.wait_for_deployment 5ed4c0c5-... timeout=120 app_id=/web
    """
    _call(
        _client(url).wait_for_deployment,
        deployment_id,
        timeout=float(timeout),
        interval=float(interval),
        app_id=app_id,
        version=version,
    )
    return True


# ---------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _id_errors(app_id: Any) -> list[str]:
    if not isinstance(app_id, str) or not app_id.strip("/"):
        return [f"id {app_id!r}: an app id is required"]
    errors = []
    for segment in (p for p in app_id.split("/") if p):
        if not _ID_SEGMENT_RE.match(segment):
            errors.append(
                f"id {app_id!r}: segment {segment!r} is invalid (lowercase letters, digits, "
                "'-' and '.' only, not starting or ending with '-')"
            )
        elif segment in _RESERVED_SEGMENTS:
            errors.append(f"id {app_id!r}: segment {segment!r} is reserved by the Marathon API")
    return errors


def _constraint_errors(constraints: Any) -> list[str]:
    if constraints is None:
        return []
    if not isinstance(constraints, list):
        return [f"constraints {constraints!r}: must be a list of [field, operator(, value)]"]
    errors = []
    for i, c in enumerate(constraints):
        where = f"constraints[{i}] {c!r}"
        if (
            not isinstance(c, list | tuple)
            or len(c) not in (2, 3)
            or not all(isinstance(x, str) for x in c)
        ):
            errors.append(f"{where}: must be [field, operator] or [field, operator, value]")
            continue
        op, value = c[1], (c[2] if len(c) == 3 else None)
        if op not in _CONSTRAINT_OPERATORS:
            errors.append(
                f"{where}: unknown operator {op!r} (one of {', '.join(_CONSTRAINT_OPERATORS)})"
            )
            continue
        if op in ("LIKE", "UNLIKE", "IS") and value is None:
            errors.append(f"{where}: {op} needs a value")
        if op in ("LIKE", "UNLIKE") and value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                errors.append(f"{where}: {value!r} is not a valid regular expression ({exc})")
        if op == "MAX_PER" and (value is None or not value.isdigit() or int(value) < 1):
            errors.append(f"{where}: MAX_PER needs a positive integer value, got {value!r}")
        if op == "GROUP_BY" and value is not None and not value.isdigit():
            errors.append(f"{where}: GROUP_BY value must be an integer, got {value!r}")
    return errors


def _network_and_ports(app: dict[str, Any], errors: list[str]) -> tuple[bool, int]:
    """Whether the app uses container networking, and how many ports a portIndex may address."""
    container = app.get("container") if isinstance(app.get("container"), dict) else {}
    docker = container.get("docker") if isinstance(container.get("docker"), dict) else {}
    # Both shapes are accepted: 1.5+ `networks`, pre-1.5 `container.docker.network`.
    container_net = False
    networks = app.get("networks")
    if networks is not None:
        if not isinstance(networks, list):
            errors.append(f"networks {networks!r}: must be a list")
            networks = []
        for i, n in enumerate(networks):
            mode = n.get("mode", "container") if isinstance(n, dict) else None
            if mode not in _NETWORK_MODES:
                errors.append(
                    f"networks[{i}] mode {mode!r}: must be one of {', '.join(_NETWORK_MODES)}"
                )
            elif mode != "host":
                container_net = True
    network = docker.get("network")
    if network is not None:
        if str(network).upper() not in _DOCKER_NETWORKS:
            errors.append(
                f"container.docker.network {network!r}: must be one of "
                f"{', '.join(_DOCKER_NETWORKS)}"
            )
        elif str(network).upper() in ("BRIDGE", "USER"):
            container_net = True

    mappings = container.get("portMappings")
    where = "container.portMappings"
    if mappings is None:
        mappings, where = docker.get("portMappings"), "container.docker.portMappings"
    mappings = mappings or []
    if not isinstance(mappings, list):
        errors.append(f"{where} {mappings!r}: must be a list")
        mappings = []
    for i, pm in enumerate(mappings):
        for key in ("containerPort", "hostPort", "servicePort"):
            v = pm.get(key, 0) if isinstance(pm, dict) else None
            if v is not None and (not _is_int(v) or not 0 <= v <= 65535):
                errors.append(f"{where}[{i}].{key} {v!r}: must be a port number 0..65535")
    if container_net:
        if app.get("portDefinitions"):
            errors.append("portDefinitions: must be empty with container (BRIDGE/USER) networking")
        return True, len(mappings)
    if mappings:
        errors.append(f"{where}: port mappings need container (BRIDGE/USER) networking")
    definitions = app.get("portDefinitions")
    if definitions is None:
        return False, 1  # Marathon gives a host-networked app one port by default
    if not isinstance(definitions, list):
        errors.append(f"portDefinitions {definitions!r}: must be a list")
        return False, 0
    return False, len(definitions)


def _health_check_errors(checks: Any, n_ports: int, container_net: bool) -> list[str]:
    if checks is None:
        return []
    if not isinstance(checks, list):
        return [f"healthChecks {checks!r}: must be a list"]
    errors = []
    what = "port mapping(s)" if container_net else "port(s)"
    for i, hc in enumerate(checks):
        where = f"healthChecks[{i}]"
        if not isinstance(hc, dict):
            errors.append(f"{where} {hc!r}: must be an object")
            continue
        proto = hc.get("protocol", "HTTP")
        if proto not in _HEALTH_PROTOCOLS:
            errors.append(
                f"{where}.protocol {proto!r}: must be one of {', '.join(_HEALTH_PROTOCOLS)}"
            )
        for key in ("gracePeriodSeconds", "intervalSeconds", "timeoutSeconds"):
            v = hc.get(key, 0)
            if not _is_number(v) or v < 0:
                errors.append(f"{where}.{key} {v!r}: must be 0 or more")
        v = hc.get("maxConsecutiveFailures", 0)
        if not _is_int(v) or v < 0:
            errors.append(f"{where}.maxConsecutiveFailures {v!r}: must be an integer 0 or more")
        if proto == "COMMAND":
            if not isinstance(hc.get("command"), dict | str):
                errors.append(f"{where}.command: COMMAND health checks need a command")
            continue
        if hc.get("port") is not None:
            if not _is_int(hc["port"]) or not 0 < hc["port"] <= 65535:
                errors.append(f"{where}.port {hc['port']!r}: must be a port number")
            continue
        idx = hc.get("portIndex", 0)
        if not _is_int(idx) or idx < 0 or idx >= n_ports:
            errors.append(f"{where}.portIndex {idx!r}: out of range, the app has {n_ports} {what}")
    return errors


def validate(app: dict[str, Any]) -> list[str]:
    """
    Check an app definition before anything is sent to Marathon.

    Returns a list of problems, each naming the offending field and value; an empty list means
    nothing was found. Covers what Marathon refuses with 422 (id syntax, reserved id segments,
    negative instances/cpus/mem/disk, cmd together with args, none of cmd/args/container,
    non-string env/labels, constraint operators and values, health check protocol and portIndex
    against the ports, upgradeStrategy outside 0..1, port mappings without container
    networking, a missing or empty Docker image). It is not exhaustive: Marathon may still
    refuse a definition this accepts.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon.validate '{"id": "/web", "instances": -1, "cmd": "sleep 60"}'
    """
    if not isinstance(app, dict):
        return [f"app definition {app!r}: must be a mapping"]
    errors = _id_errors(app.get("id"))

    cmd, args = app.get("cmd"), app.get("args")
    if cmd is not None and args is not None:
        errors.append(f"cmd {cmd!r} and args {args!r}: give one of them, not both")
    if cmd is not None and not isinstance(cmd, str):
        errors.append(f"cmd {cmd!r}: must be a string")
    if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        errors.append(f"args {args!r}: must be a list of strings")
    if cmd is None and args is None and not app.get("container"):
        errors.append("cmd/args/container: the app needs cmd, args or a container")

    instances = app.get("instances", 1)
    if not _is_int(instances) or instances < 0:
        errors.append(f"instances {instances!r}: must be an integer 0 or more")
    for key in ("cpus", "mem", "disk", "gpus"):
        v = app.get(key, 0)
        if not _is_number(v) or v < 0:
            errors.append(f"{key} {v!r}: must be a number 0 or more")
    for key in ("env", "labels"):
        value = app.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            errors.append(f"{key} {value!r}: must be a mapping of strings")
            continue
        for k, v in value.items():
            # YAML turns true/1/1.0 into non-strings; Marathon refuses them.
            if not isinstance(k, str) or not isinstance(v, str):
                errors.append(f"{key}[{k!r}] {v!r}: must be a string (quote it in YAML)")

    strategy = app.get("upgradeStrategy")
    if strategy is not None:
        if not isinstance(strategy, dict):
            errors.append(f"upgradeStrategy {strategy!r}: must be a mapping")
        else:
            for key in ("minimumHealthCapacity", "maximumOverCapacity"):
                v = strategy.get(key, 1)
                if not _is_number(v) or not 0 <= v <= 1:
                    errors.append(f"upgradeStrategy.{key} {v!r}: must be between 0 and 1")

    container = app.get("container")
    if container is not None:
        if not isinstance(container, dict):
            errors.append(f"container {container!r}: must be a mapping")
        else:
            ctype = container.get("type", "DOCKER")
            if ctype not in ("DOCKER", "MESOS"):
                errors.append(f"container.type {ctype!r}: must be DOCKER or MESOS")
            docker = container.get("docker")
            image = docker.get("image") if isinstance(docker, dict) else None
            if not isinstance(image, str) or not image.strip():
                errors.append(f"container.docker.image {image!r}: an image name is required")

    errors += _constraint_errors(app.get("constraints"))
    container_net, n_ports = _network_and_ports(app, errors)
    errors += _health_check_errors(app.get("healthChecks"), n_ports, container_net)
    return errors
