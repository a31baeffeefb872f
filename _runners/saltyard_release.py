"""
Release an application from a git ref to production (issue 14; docs/release.md).

A thin adapter between Salt and ``saltyard.release.workflow``: it compiles the master's own
pillar (the inventory, the release data, the orchestration's Consul token), gives the workflow
Salt's LocalClient to run execution modules and single states on the nodes, and fires the
workflow's events on the master's event bus. ``orch.release`` (states/orch/release.sls) calls
``run``; an operator watches with ``salt-run state.event pretty=True`` (tags
``saltyard/release/<app>/<step>/<outcome>``) and reads the record with ``status``::

    salt-run state.orchestrate orch.release \\
        pillar='{"app": "hello", "ref": "main", "version": "1.1.0"}'
    salt-run saltyard_release.status hello

The master loads this module from the checkout (``runner_dirs`` in its configuration, written
by the bootstrap).
"""

from __future__ import annotations

import json
import logging
from typing import Any

try:
    import salt.client
    import salt.pillar
    import salt.utils.event

    from saltyard.clients.consul import ConsulClient, ConsulError
    from saltyard.release import lock, record, smoke, store, workflow
    from saltyard.release.plan import PlanError, load_app

    HAS_SALTYARD = True
except ImportError:  # the master's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "saltyard_release"

log = logging.getLogger(__name__)

CONSUL = "127.0.0.1:8500"  # the master node's own Consul agent
# Seconds a minion may take over a step's call beyond the step's own timeout.
CALL_SLACK = 120


def __virtual__():
    if not HAS_SALTYARD:
        return False, "saltyard_release: the saltyard package is not importable by the master"
    return __virtualname__


# --------------------------------------------------------------------------------- plumbing
class _Minions:
    """workflow.Minions over Salt's LocalClient."""

    def __init__(self, opts: dict) -> None:
        self.local = salt.client.get_local_client(opts["conf_file"])

    def _one(self, node: str, fun: str, args: list, kwargs: dict, timeout: float) -> Any:
        answer = self.local.cmd(
            node, fun, arg=args, kwarg=kwargs or None, timeout=timeout, full_return=True
        )
        if node not in answer:
            raise workflow.StepFailed(f"{node} did not answer {fun} within {timeout:g} s")
        return answer[node]

    def call(self, node: str, fun: str, *args: Any, timeout: float = 300, **kwargs: Any) -> Any:
        answer = self._one(node, fun, list(args), kwargs, timeout + CALL_SLACK)
        if answer.get("retcode", 0) != 0:
            raise workflow.StepFailed(f"{fun} on {node}: {answer.get('ret')}")
        return answer.get("ret")

    def call_many(self, nodes: list[str], fun: str, *args: Any, timeout: float = 60) -> dict:
        answers = self.local.cmd(
            nodes, fun, arg=list(args), tgt_type="list", timeout=timeout, full_return=True
        )
        return {
            node: answer.get("ret") if answer.get("retcode", 0) == 0 else f"error: {answer}"
            for node, answer in answers.items()
        }

    def state(self, node: str, fun: str, name: str, *, test: bool = False, **kwargs: Any) -> dict:
        timeout = float(kwargs.get("timeout", 300))
        answer = self._one(
            node, "state.single", [fun, name], dict(kwargs, test=test), timeout + CALL_SLACK
        )
        ret = answer.get("ret")
        if not isinstance(ret, dict) or len(ret) != 1:
            raise workflow.StepFailed(f"{fun} {name} on {node}: {ret}")
        (result,) = ret.values()
        if result.get("result") is False:
            raise workflow.StepFailed(f"{fun} {name} on {node}: {result.get('comment')}")
        return result


def _fire(tag: str, data: dict) -> None:
    event = salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False)
    try:
        event.fire_event(data, tag)
    finally:
        event.destroy()


def _progress(line: str) -> None:
    log.info("saltyard_release: %s", line)
    try:
        __jid_event__.fire_event({"message": line}, "progress")
    except NameError:  # called outside a runner job
        pass


def _pillar() -> dict:
    """The master's own pillar, as an orchestration sees it (the id ``<master>_master``)."""
    compiler = salt.pillar.get_pillar(
        __opts__, {}, __opts__["id"], saltenv=__opts__.get("saltenv") or "base"
    )
    try:
        pillar = compiler.compile_pillar()
    finally:
        compiler.destroy()
    if pillar.get("_errors"):
        raise workflow.StepFailed("the master's pillar has errors: " + "; ".join(pillar["_errors"]))
    return pillar


def _get(pillar: dict, path: str, default: Any = None) -> Any:
    node: Any = pillar
    for key in path.split(":"):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _site(pillar: dict) -> workflow.Site:
    members = _get(pillar, "saltyard:members", {}) or {}

    def first(role: str) -> dict:
        if not members.get(role):
            raise workflow.StepFailed(f"the inventory has no {role} node: a release needs one")
        return members[role][0]

    lb_port = str(_get(pillar, "lb:listen", "80")).rpartition(":")[2]
    vip = _get(pillar, "registry:vip:address")
    registry = vip or first("registry")["address"]
    return workflow.Site(
        environments=list(_get(pillar, "saltyard:cluster:environments", [])),
        domain=_get(pillar, "lb:domain") or _get(pillar, "saltyard:cluster:domain", ""),
        build_node=first("build")["name"],
        marathon_node=first("marathon")["name"],
        lb_nodes=[m["name"] for m in members.get("lb", [])],
        lb_url=f"http://{first('lb')['address']}:{lb_port}",
        registry_host=f"{registry}:{_get(pillar, 'registry:port', 5000)}",
    )


def _consul(pillar: dict) -> ConsulClient:
    token = _get(pillar, "consul:acl:tokens:release")
    if not token:
        raise workflow.StepFailed(
            "pillar consul:acl:tokens:release is empty on the master (salt/secrets.yaml)"
        )
    return ConsulClient(CONSUL, token=token)


def _plan(pillar: dict, app: str, data: dict | None):
    known = _get(pillar, "release:apps", {}) or {}
    if data is None:
        if app not in known:
            raise PlanError(
                f"unknown app {app!r}: pillar release:apps has "
                f"{', '.join(sorted(known)) or 'no app'} (one file per app under pillar/release/)"
            )
        data = known[app]
    return load_app(app, data, list(_get(pillar, "saltyard:cluster:environments", [])))


def _failed(message: str, **extra: Any) -> dict:
    # A non-zero retcode fails `salt-run` and the orchestration's step; saltmod.runner also
    # reads "Error" in a returned mapping as a failure.
    __context__["retcode"] = 1
    return dict(extra, Error=message)


# --------------------------------------------------------------------------------- runners
def run(app: str, ref: str, version: str, data: dict | None = None) -> dict:
    """
    Release ``app`` at git ``ref`` as ``version``: build, FAT and UAT with smoke tests, promote,
    the gray release in production, then the rollout; or roll back when a canary window fails
    the gate. A run after a failed or killed one continues where the release stands; a finished
    release run again does nothing; another release of the app in progress is refused.
    ``data`` replaces the app's pillar ``release:apps:<app>`` (orch.release passes its own,
    with the run's pillar overrides).

    CLI Example:

    .. code-block:: bash

        salt-run saltyard_release.run hello main 1.1.0
    """
    try:
        pillar = _pillar()
        plan = _plan(pillar, app, data)
        release = workflow.Release(
            plan,
            _site(pillar),
            _Minions(__opts__),
            _consul(pillar),
            _fire,
            progress=_progress,
        )
        outcome = release.run(str(ref), version)
    except (
        PlanError,
        workflow.StepFailed,
        lock.LockHeld,
        record.ReleaseRefused,
        store.StoreError,
        smoke.SmokeFailed,
        ConsulError,
    ) as exc:
        return _failed(str(exc))
    summary = json.loads(outcome.record.to_json())
    if outcome.outcome == record.ROLLED_BACK:
        return _failed(outcome.message, record=summary)
    return {"outcome": outcome.outcome, "message": outcome.message, "record": summary}


def status(app: str) -> dict:
    """
    The release record of ``app`` (Consul KV ``saltyard/release/<app>/record``): the ref, the
    version, the outcome and every step with its state, times and figures.

    CLI Example:

    .. code-block:: bash

        salt-run saltyard_release.status hello
    """
    try:
        found, _ = store.load_record(_consul(_pillar()), app)
    except (workflow.StepFailed, store.StoreError, ConsulError) as exc:
        return _failed(str(exc))
    if found is None:
        return {"app": app, "outcome": "no release yet"}
    return json.loads(found.to_json())


def plan(app: str, ref: str, version: str, data: dict | None = None) -> dict:
    """
    What a run of ``orch.release`` would do, changing nothing (the orchestration's test mode):
    the release data checked, where the run would start or why it would be refused, each step
    to do, and each deployment's Marathon diff once its image is in the registry.

    CLI Example:

    .. code-block:: bash

        salt-run saltyard_release.plan hello main 1.1.0
    """
    try:
        pillar = _pillar()
        release = workflow.Release(
            _plan(pillar, app, data), _site(pillar), _Minions(__opts__), _consul(pillar), _fire
        )
        return release.predict(str(ref), version)
    except (
        PlanError,
        workflow.StepFailed,
        record.ReleaseRefused,
        store.StoreError,
        ConsulError,
    ) as exc:
        return _failed(str(exc))
