"""
Marathon apps, tasks and deployments, through saltyard's Marathon client.

A thin adapter over ``saltyard.clients.marathon.MarathonClient``: every function builds a client
from the configured URL, calls it, and turns the client's errors into CommandExecutionError
carrying Marathon's message and details. No HTTP code lives here.

Named ``marathon_api``, not ``marathon``: Salt (up to 3007) ships a ``marathon`` execution module
and a ``marathon_app`` state (proxy-minion ones, other signatures), and a custom module replaces
Salt's of the same name on the minion, which breaks Salt's own (tests/unit/test_salt_names.py).

Configuration (minion config, grains or pillar, read with ``config.get``), or ``url=`` on any
function::

    marathon:
      url: http://marathon.service:8080   # may carry credentials: http://user:pass@host:8080
      username: ops                        # optional HTTP basic auth
      password: secret
      verify: true                         # TLS verification, or a CA bundle path

Without ``marathon:url``, the inventory's first marathon node (pillar ``saltyard:members:marathon``)
on ``marathon:http_port`` is used; without ``marathon:username``, the marathon role's own
``marathon:http_credentials`` (present only on the nodes that serve Marathon).

``validate`` checks a definition locally, before anything is sent to Marathon, with the rules
the client, the ``marathon_application`` state and the emulator share
(``saltyard.marathon_appdef``).
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard import marathon_appdef
    from saltyard.clients import marathon as marathon_client

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "marathon_api"


def __virtual__() -> str | tuple[bool, str]:
    # Everything here goes through saltyard's client; without the package there is no client.
    if not HAS_SALTYARD:
        return (
            False,
            "marathon_api: the saltyard package (saltyard.clients.marathon) is not importable",
        )
    return __virtualname__


# ---------------------------------------------------------------------- plumbing


def _client(url: str | None = None) -> marathon_client.MarathonClient:
    # The settings (URL, the inventory's marathon node as the default, credentials) are read by
    # the package, so that every Salt module that needs Marathon (mesos.drain too) reads them
    # the same way.
    try:
        return marathon_client.client_from_config(__salt__["config.get"], url)
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc


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

        salt '*' marathon_api.info
    """
    return _call(_client(url).info)


def leader(url: str | None = None) -> str | None:
    """
    Return the leading Marathon as ``host:port``, or None while there is no leader.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.leader
    """
    return _call(_client(url).leader)


# ---------------------------------------------------------------------- apps


def apps(url: str | None = None) -> list[dict[str, Any]]:
    """
    Return every app definition (with Marathon's status counters).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.apps
    """
    return _call(_client(url).list_apps)


def app(app_id: str, url: str | None = None) -> dict[str, Any]:
    """
    Return one app; raises CommandExecutionError (Marathon's "does not exist") if it is absent.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.app /web
    """
    return _call(_client(url).get_app, app_id)


def exists(app_id: str, url: str | None = None) -> bool:
    """
    Return True if the app exists.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.exists /web
    """
    return _call(_client(url).app_exists, app_id)


def create(app: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """
    Create an app from a full definition (``app['id']`` names it). Fails if the id exists.

    Returns the created app, including ``deployments`` (the deployment starting it) and
    ``version``.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.create '{"id": "/web", "cmd": "python3 -m http.server $PORT0"}'
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

        salt '*' marathon_api.update /web '{"env": {"LOG_LEVEL": "debug"}}'
    """
    return _ref(_call(_client(url).update_app, app_id, app, force=force))


def delete(app_id: str, force: bool = False, url: str | None = None) -> dict[str, Any]:
    """
    Delete an app (its tasks are killed by the returned deployment).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.delete /web
    """
    return _ref(_call(_client(url).delete_app, app_id, force=force))


def restart(app_id: str, force: bool = False, url: str | None = None) -> dict[str, Any]:
    """
    Replace every task of an app with a fresh one (a rolling restart under its upgradeStrategy).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.restart /web
    """
    return _ref(_call(_client(url).restart_app, app_id, force=force))


def scale(
    app_id: str, instances: int, force: bool = False, url: str | None = None
) -> dict[str, Any]:
    """
    Set an app's instance count (no running task is replaced).

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.scale /web 3
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

        salt '*' marathon_api.tasks /web
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

        salt '*' marathon_api.kill_task /web web.0b5c6f1e-... scale=True
    """
    result = _call(_client(url).kill_task, app_id, task_id, scale=scale, force=force)
    return result if isinstance(result, dict) else _ref(result)


# ---------------------------------------------------------------------- deployments


def deployments(url: str | None = None) -> list[dict[str, Any]]:
    """
    Return the running deployments.

    CLI Example:

    .. code-block:: bash

        salt '*' marathon_api.deployments
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

        salt '*' marathon_api.wait_for_deployment 5ed4c0c5-... timeout=120 app_id=/web
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

        salt '*' marathon_api.validate '{"id": "/web", "instances": -1, "cmd": "sleep 60"}'
    """
    # The rules are the client's (one place for them, shared with the emulator).
    return [error.message for error in marathon_appdef.validate_app(app)]
