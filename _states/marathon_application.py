"""
Keep a Marathon app at a definition, an instance count, or gone.

Works through saltyard's ``marathon_api`` execution module (``_modules/marathon_api.py``), which
reads the Marathon URL from ``marathon:url`` in the minion config or pillar. Named
``marathon_application``, not ``marathon_app``, which is Salt's own state (up to 3007).

.. code-block:: yaml

    /web:
      marathon_application.present:
        - app:
            cmd: exec python3 -m http.server $PORT0
            instances: 2
            mem: 64
            container:
              docker: {image: registry.local/web:1.4}
              portMappings: [{containerPort: 0, hostPort: 0}]
            networks: [{mode: container/bridge}]
            healthChecks: [{protocol: HTTP, path: /, portIndex: 0}]
        - timeout: 300

Only the keys the state sets are compared with the running app, so fields Marathon fills in
(version, task counters, defaults) never show up as changes. A key removed from the state is
left as it is in Marathon.
"""

from __future__ import annotations

import copy
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    # The id canonicaliser and shape normaliser the client and the emulator use, so the state
    # compares definitions exactly as Marathon (or the emulator) stores them.
    from saltyard.marathon_appdef import canonical_id, upgrade_to_new_shape

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "marathon_application"

# Fields Marathon computes or fills in; a definition may echo them back (e.g. copied from
# `marathon_api.app`) but they are never desired state.
_MARATHON_OWNED = (
    "version",
    "versionInfo",
    "deployments",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "lastTaskFailure",
    "readinessCheckResults",
)
# Maps the user owns as a whole: a key missing from the state must go from Marathon too.
_WHOLE_MAPS = ("env", "labels")


def __virtual__() -> str | tuple[bool, str]:
    if not HAS_SALTYARD:
        return (
            False,
            "marathon_application: the saltyard package (saltyard.marathon_appdef) is not "
            "importable",
        )
    # Every call goes through saltyard's marathon_api module (validate, exists, app, ...).
    if "marathon_api.validate" not in __salt__:
        return (
            False,
            "marathon_application: saltyard's marathon_api execution module is not loaded",
        )
    return __virtualname__


def _desired(name: str, app: dict[str, Any]) -> dict[str, Any]:
    """The definition to send: `name` is the id; Marathon-owned fields are dropped."""
    desired = {k: copy.deepcopy(v) for k, v in (app or {}).items() if k not in _MARATHON_OWNED}
    desired.setdefault("id", name)
    return desired


def _comparable(desired: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the pre-1.5 Docker network shape into the 1.5+ one Marathon answers with."""
    desired = upgrade_to_new_shape(desired)
    desired["id"] = canonical_id(desired["id"])
    return desired


def _matches(want: Any, have: Any, key: str = "") -> bool:
    """True if `have` (running) satisfies `want` (desired): mappings are compared on the keys
    `want` sets, lists element by element; servicePort 0 means "any port Marathon assigned"."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        if key in _WHOLE_MAPS:
            return want == have
        for k, v in want.items():
            if k == "servicePort" and v == 0:
                continue
            if k not in have:
                # An empty value in the state equals an absent one in Marathon's answer.
                if v in (None, [], {}, ""):
                    continue
                return False
            if not _matches(v, have[k], k):
                return False
        return True
    if isinstance(want, list | tuple):
        return (
            isinstance(have, list | tuple)
            and len(want) == len(have)
            and all(_matches(w, h) for w, h in zip(want, have, strict=True))
        )
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    return want == have


def _diff(desired: dict[str, Any], running: dict[str, Any] | None) -> dict[str, Any]:
    """{'old': ..., 'new': ...} for the top-level keys that differ; {} when nothing does."""
    if running is None:
        return {"old": None, "new": desired}
    want = _comparable(desired)
    old, new = {}, {}
    for key, value in want.items():
        if not _matches(value, running.get(key), key):
            old[key] = running.get(key)
            new[key] = desired.get(key, value)
    return {"old": old, "new": new} if new else {}


def _wait(ref: dict[str, Any], app_id: str, timeout: float) -> None:
    if ref.get("deploymentId"):
        __salt__["marathon_api.wait_for_deployment"](
            ref["deploymentId"], timeout=timeout, app_id=app_id, version=ref.get("version")
        )


def _running(app_id: str) -> dict[str, Any] | None:
    if not __salt__["marathon_api.exists"](app_id):
        return None
    return __salt__["marathon_api.app"](app_id)


def _image_problem(desired: dict[str, Any]) -> str | None:
    # The image must be in the cluster registry before Marathon hears of the app: a missing
    # image otherwise surfaces only as failed launches at the deployment's timeout. The check
    # fails closed: when it cannot be made (no registry module, no registry configured) the app
    # is refused, unless pillar marathon:image_check is False.
    image = ((desired.get("container") or {}).get("docker") or {}).get("image")
    if not image:
        return None
    enabled = __salt__["config.get"]("marathon:image_check", True)
    if not isinstance(enabled, bool):
        return f"pillar marathon:image_check is {enabled!r}: True or False"
    if not enabled:
        return None
    hint = "; set pillar marathon:image_check: False to deploy without the check"
    if "registry.check_image" not in __salt__:
        return (
            f"cannot check image {image!r}: saltyard's registry execution module is not "
            f"loaded{hint}"
        )
    try:
        problem = __salt__["registry.check_image"](image)
    except CommandExecutionError as exc:
        return f"cannot check image {image!r} in the cluster registry: {exc}"
    if problem and problem.startswith("no cluster registry"):
        return problem + hint
    return problem


def present(
    name: str,
    app: dict[str, Any],
    wait: bool = True,
    timeout: float = 300,
    force: bool = False,
) -> dict[str, Any]:
    """
    Ensure the app ``name`` runs with definition ``app``.

    name
        The app id, e.g. ``/web`` (also used when ``app`` has no ``id``).
    app
        The app definition (cmd/args, container, instances, env, healthChecks, ...). Only the
        keys given are compared with the running app.
    wait
        Wait for the deployment to finish; a failed or timed out deployment fails the state
        with Marathon's reason (the last task failure).
    timeout
        Seconds to wait for the deployment.
    force
        Cancel a deployment that holds the app instead of failing on it.

    SLS Example:

    .. code-block:: yaml

        /web:
          marathon_application.present:
            - app:
                cmd: exec python3 -m http.server $PORT0
                instances: 2
                mem: 64
            - timeout: 300

    CLI Example:

    .. code-block:: bash

        salt '*' state.single marathon_application.present /web \
            app='{"cmd": "sleep 600", "mem": 32}'
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    if not isinstance(app, dict):
        ret["comment"] = f"app must be a mapping (the app definition), got {app!r}"
        return ret
    desired = _desired(name, app)
    if canonical_id(desired["id"]) != canonical_id(name):
        ret["comment"] = f"app id {desired['id']!r} differs from the state's name {name!r}"
        return ret
    # Validate locally first, so a bad definition never reaches Marathon (and never half-applies).
    errors = __salt__["marathon_api.validate"](desired)
    if errors:
        ret["comment"] = f"invalid definition for app {name}: " + "; ".join(errors)
        return ret

    app_id = canonical_id(name)
    problem = _image_problem(desired)
    if problem:
        ret["comment"] = f"app {app_id}: {problem}"
        return ret
    try:
        running = _running(app_id)
        diff = _diff(desired, running)
        if not diff:
            ret["result"] = True
            ret["comment"] = f"app {app_id} is already as defined"
            return ret
        verb = "created" if running is None else "updated"
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = diff
            ret["comment"] = f"app {app_id} would be {verb}"
            return ret

        if running is None:
            created = __salt__["marathon_api.create"](desired)
            deployments = created.get("deployments") or [{}]
            ref = {"deploymentId": deployments[0].get("id"), "version": created.get("version")}
        else:
            ref = __salt__["marathon_api.update"](app_id, desired, force=force)
        ret["changes"] = diff
        if wait:
            _wait(ref, app_id, timeout)
            # Read back: the deployment finishing does not prove the definition took.
            left = _diff(desired, _running(app_id))
            if left:
                ret["comment"] = f"app {app_id} {verb}, but still differs: {left}"
                return ret
    except CommandExecutionError as exc:
        ret["comment"] = f"app {app_id}: {exc}"
        return ret

    ret["result"] = True
    ret["comment"] = f"app {app_id} {verb}" + (" and deployed" if wait else " (not waited for)")
    return ret


def absent(name: str, wait: bool = True, timeout: float = 300, force: bool = False) -> dict:
    """
    Ensure the app ``name`` does not exist (its tasks are killed).

    SLS Example:

    .. code-block:: yaml

        /old-web:
          marathon_application.absent:
            - timeout: 120

    CLI Example:

    .. code-block:: bash

        salt '*' state.single marathon_application.absent /web
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    app_id = canonical_id(name)
    try:
        running = _running(app_id)
        if running is None:
            ret["result"] = True
            ret["comment"] = f"app {app_id} is already absent"
            return ret
        changes = {"old": {"id": app_id, "version": running.get("version")}, "new": None}
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = changes
            ret["comment"] = f"app {app_id} would be deleted"
            return ret
        ref = __salt__["marathon_api.delete"](app_id, force=force)
        ret["changes"] = changes
        if wait and ref.get("deploymentId"):
            # No version check: the app is gone afterwards by design.
            __salt__["marathon_api.wait_for_deployment"](ref["deploymentId"], timeout=timeout)
    except CommandExecutionError as exc:
        ret["comment"] = f"app {app_id}: {exc}"
        return ret
    ret["result"] = True
    ret["comment"] = f"app {app_id} deleted"
    return ret


def scaled(
    name: str, instances: int, wait: bool = True, timeout: float = 300, force: bool = False
) -> dict:
    """
    Ensure the existing app ``name`` runs ``instances`` instances (a scaling-only change:
    running tasks are kept).

    SLS Example:

    .. code-block:: yaml

        /web:
          marathon_application.scaled:
            - instances: 3

    CLI Example:

    .. code-block:: bash

        salt '*' state.single marathon_application.scaled /web instances=3
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    app_id = canonical_id(name)
    # Same checks as validate() applies, before anything is sent.
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
        ret["comment"] = f"instances {instances!r}: must be an integer 0 or more"
        return ret
    try:
        running = _running(app_id)
        if running is None:
            ret["comment"] = f"app {app_id} does not exist: nothing to scale"
            return ret
        if running.get("instances") == instances:
            ret["result"] = True
            ret["comment"] = f"app {app_id} already has {instances} instance(s)"
            return ret
        changes = {"old": {"instances": running.get("instances")}, "new": {"instances": instances}}
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = changes
            ret["comment"] = f"app {app_id} would be scaled to {instances}"
            return ret
        ref = __salt__["marathon_api.scale"](app_id, instances, force=force)
        ret["changes"] = changes
        if wait:
            _wait(ref, app_id, timeout)
    except CommandExecutionError as exc:
        ret["comment"] = f"app {app_id}: {exc}"
        return ret
    ret["result"] = True
    ret["comment"] = f"app {app_id} scaled to {instances}"
    return ret
