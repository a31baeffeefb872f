"""A rolling kernel upgrade: one node at a time, drained first, rebooted, verified, given back.

For each target node, in the order given (docs/kernel.md):

1. **check**: the node's kernel (``kernel_boot.status``) against its pillar
   ``kernel:boot:release``. A container (it runs its host's kernel) or a node already running the
   release or newer is skipped, and nothing is done to it.
2. **plan**, for every node to upgrade, before anything changes on any of them: the ``kernel``
   state in test mode. A package apt does not have (or any other refusal of the state) stops the
   run here, naming the node and the reason; nothing is drained.
3. **drain** (mesos-agent nodes): ``mesos.drain`` on the scheduler node moves the agent's tasks
   to other agents one at a time without going below any app's healthy capacity, then marks it
   DOWN; an agent whose tasks have nowhere to go is refused, unchanged, unless the run accepts
   downtime.
4. **install**: the ``kernel`` state for real: the kernel installed and made GRUB's default; the
   node must then report that a reboot is required.
5. **reboot**, then wait for the minion's start event (and a new boot id) within the timeout. A
   node that does not come back in time is reported with the timeout, not guessed at.
6. **verify**: the running kernel is the release or newer and nothing more needs a reboot; the
   docker preflight passes where the node runs Docker.
7. **converge**: a highstate (the services come back configured as before).
8. **up** (mesos-agent nodes): the agent leaves maintenance and the scheduler may place tasks
   there again.
9. **tasks** (mesos-agent nodes whose drain stopped tasks, downtime accepted): wait until those
   apps run their full healthy count again (Marathon relaunches the stopped tasks once the agent
   is up), within ``drain_timeout``; only then the next node.

The first failure stops the run: the nodes after it are untouched, and the result and an event
name the node, the step and why. Each step of each node is an event
``saltyard/kernel/<node>/<step>/<outcome>`` with its figures. A re-run continues: nodes done are
skipped at their check (they run the release); a node left drained by a stopped run is drained
again (nothing changes for an agent already DOWN) and carried on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

TAG = "saltyard/kernel"


class RolloutFailed(Exception):
    """A node's step failed; the message names the node, the step and the reason."""

    def __init__(self, node: str, step: str, reason: str):
        super().__init__(f"{node}: {step} failed: {reason}")
        self.node, self.step, self.reason = node, step, reason


class Salt(Protocol):
    """What the rollout asks of Salt (the runner's adapter over LocalClient and the event bus)."""

    def call(
        self, node: str, fun: str, *args: Any, timeout: float = ..., kwargs: dict | None = None
    ) -> Any:
        """An execution module function on one node (``kwargs``: the function's keyword
        arguments; ``timeout``: how long to wait for its return): its return, or raise with
        the reason."""

    def apply(
        self,
        node: str,
        sls: str | None,
        *,
        test: bool = False,
        pillar: dict | None = None,
        timeout: float = ...,
    ) -> dict:
        """``state.apply`` of sls (None: the highstate) on a node, with pillar overrides: the
        states' results."""

    def reboot(self, node: str, timeout: float) -> float | None:
        """Reboot the node and wait for its minion to start again: the seconds it took, or None
        when it did not come back within timeout."""

    def fire(self, tag: str, data: dict) -> None:
        """An event on the master's bus."""


@dataclass(frozen=True)
class Target:
    name: str
    roles: tuple[str, ...]

    @property
    def agent(self) -> bool:
        return "mesos-agent" in self.roles

    @property
    def docker(self) -> bool:
        return "docker" in self.roles


@dataclass
class Options:
    scheduler: str | None  # the node that drains agents (the marathon node); None: no agents
    reboot_timeout: float = 600
    drain_timeout: float = 300
    accept_downtime: bool = False
    state_timeout: float = 1800
    # kernel:boot for this run ({package, release}), over the nodes' own pillar; None: theirs.
    kernel: dict | None = None

    @property
    def pillar(self) -> dict | None:
        return {"kernel": {"boot": self.kernel}} if self.kernel else None


@dataclass
class NodeReport:
    outcome: str = "pending"  # skipped | upgraded | failed | planned
    steps: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _failed_states(results: Any) -> list[str]:
    if not isinstance(results, dict):
        return [str(results)]
    return [
        f"{r.get('__id__', key)}: {r.get('comment')}"
        for key, r in results.items()
        if isinstance(r, dict) and r.get("result") is False
    ]


def _changed(results: dict) -> list[str]:
    return [
        r.get("__id__", key)
        for key, r in results.items()
        if isinstance(r, dict) and r.get("changes")
    ]


class Rollout:
    def __init__(
        self,
        salt: Salt,
        targets: list[Target],
        options: Options,
        progress: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.salt, self.targets, self.options = salt, targets, options
        self.progress, self.clock, self.sleep = progress, clock, sleep
        # Per node: the apps whose tasks its drain stopped (downtime accepted).
        self.stopped: dict[str, list[str]] = {}
        self.report: dict[str, NodeReport] = {t.name: NodeReport() for t in targets}

    # --- events and reports --------------------------------------------------------------------

    def _event(self, node: str, step: str, outcome: str, **data: Any) -> None:
        self.report[node].steps[step] = dict(data, outcome=outcome)
        self.salt.fire(f"{TAG}/{node}/{step}/{outcome}", dict(data, node=node, step=step))
        detail = ", ".join(f"{k}={v}" for k, v in data.items())
        self.progress(f"{node}: {step} {outcome}" + (f" ({detail})" if detail else ""))

    def _fail(self, node: str, step: str, reason: str) -> RolloutFailed:
        self.report[node].outcome = "failed"
        self._event(node, step, "failed", reason=reason)
        return RolloutFailed(node, step, reason)

    # --- the steps -----------------------------------------------------------------------------

    def check(self, target: Target) -> dict | None:
        """The node's kernel against its pillar; None when the node is skipped."""
        node = target.name
        try:
            status = self.salt.call(node, "kernel_boot.status", timeout=60)
            # unmask: Salt 3008 masks pillar.get's output outside templates.
            boot = self.options.kernel or (
                self.salt.call(node, "pillar.get", "kernel:boot", kwargs={"unmask": True}) or {}
            )
        except Exception as exc:  # noqa: BLE001 - any failure to ask is this step's failure
            raise self._fail(node, "check", str(exc)) from exc
        package, release = boot.get("package"), boot.get("release")
        if status.get("container"):
            self.report[node].outcome = "skipped"
            self._event(node, "check", "skipped", running=status["running"], why="container")
            return None
        if not package or not release:
            raise self._fail(
                node,
                "check",
                "its pillar has no kernel:boot:package and kernel:boot:release "
                "(states/kernel/defaults.yaml): nothing says which kernel to roll out",
            )
        try:
            meets = self.salt.call(node, "kernel_check.compare", status["running"], str(release))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "check", f"kernel:boot:release {release!r}: {exc}") from exc
        if meets >= 0:
            self.report[node].outcome = "skipped"
            self._event(
                node,
                "check",
                "skipped",
                running=status["running"],
                release=release,
                why="already running the release or newer",
            )
            return None
        self._event(
            node, "check", "upgrade", running=status["running"], release=release, package=package
        )
        return {"status": status, "package": package, "release": str(release)}

    def plan(self, target: Target) -> dict:
        """For an agent, what its drain would do (a drain with nowhere to go for some task is
        refused here, before any node of the run is touched, and cheaply: before the kernel
        state's apt work); then the kernel state in test mode: what it would do, or the
        refusal."""
        node = target.name
        drain = None
        if target.agent:
            if not self.options.scheduler:
                raise self._fail(
                    node, "plan", "the inventory has no marathon node to drain through"
                )
            try:
                drain = self.salt.call(
                    self.options.scheduler,
                    "mesos.drain_check",
                    node,
                    kwargs={"accept_downtime": self.options.accept_downtime},
                    timeout=120,
                )
            except Exception as exc:  # noqa: BLE001
                raise self._fail(node, "plan", f"{exc} (nothing was drained or changed)") from exc
        try:
            results = self.salt.apply(
                node,
                "kernel",
                test=True,
                pillar=self.options.pillar,
                timeout=self.options.state_timeout,
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "plan", str(exc)) from exc
        failed = _failed_states(results)
        if failed:
            raise self._fail(node, "plan", "; ".join(failed) + " (nothing was drained or changed)")
        predicted = {
            r.get("__id__", key): r.get("changes")
            for key, r in results.items()
            if isinstance(r, dict) and r.get("changes")
        }
        if drain is not None:
            drain = {"move": drain.get("move", []), "stop": sorted(drain.get("stop") or {})}
        self._event(node, "plan", "ok", predicted=predicted, drain=drain)
        return predicted

    def drain(self, target: Target) -> None:
        node = target.name
        if not target.agent:
            return
        if not self.options.scheduler:
            raise self._fail(node, "drain", "the inventory has no marathon node to drain through")
        started = self.clock()
        try:
            report = self.salt.call(
                self.options.scheduler,
                "mesos.drain",
                node,
                kwargs={
                    "accept_downtime": self.options.accept_downtime,
                    "timeout": self.options.drain_timeout,
                },
                # The drain moves tasks one at a time, each within drain_timeout.
                timeout=self.options.drain_timeout * 20,
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "drain", str(exc)) from exc
        seconds = self.clock() - started
        self.report[node].seconds["drain"] = round(seconds, 1)
        moved = len((report or {}).get("moved", []))
        self.stopped[node] = sorted((report or {}).get("downtime_accepted") or {})
        self._event(
            node,
            "drain",
            "ok",
            moved=moved,
            stopped=len((report or {}).get("stopped", [])),
            seconds=round(seconds, 1),
        )

    def install(self, target: Target) -> str:
        node = target.name
        started = self.clock()
        try:
            results = self.salt.apply(
                node, "kernel", pillar=self.options.pillar, timeout=self.options.state_timeout
            )
            failed = _failed_states(results)
            if failed:
                raise RuntimeError("; ".join(failed))
            status = self.salt.call(node, "kernel_boot.status", timeout=60)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "install", str(exc)) from exc
        if not status.get("reboot_required"):
            raise self._fail(
                node,
                "install",
                f"the kernel state succeeded but GRUB's default is {status.get('default')!r} "
                f"and the node runs {status.get('running')!r}: nothing to reboot into",
            )
        seconds = self.clock() - started
        self.report[node].seconds["install"] = round(seconds, 1)
        self._event(
            node, "install", "ok", default=status["default"], changed=_changed(results),
            seconds=round(seconds, 1),
        )  # fmt: skip
        return status["default"]

    def reboot(self, target: Target, into: str) -> None:
        node = target.name
        self._event(node, "reboot", "started", into=into, timeout=self.options.reboot_timeout)
        try:
            seconds = self.salt.reboot(node, self.options.reboot_timeout)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "reboot", str(exc)) from exc
        if seconds is None:
            raise self._fail(
                node,
                "reboot",
                f"the minion did not come back within {self.options.reboot_timeout:g} s of the "
                f"reboot into {into} (look at the node's console); the nodes after it were not "
                "touched",
            )
        self.report[node].seconds["reboot"] = round(seconds, 1)
        self._event(node, "reboot", "ok", seconds=round(seconds, 1))

    def verify(self, target: Target, release: str) -> str:
        node = target.name
        try:
            status = self.salt.call(node, "kernel_boot.status", timeout=60)
            meets = self.salt.call(node, "kernel_check.compare", status["running"], release)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "verify", str(exc)) from exc
        if meets < 0 or status.get("reboot_required"):
            raise self._fail(
                node,
                "verify",
                f"it runs {status['running']} after the reboot, not {status.get('default')} "
                f"(release {release} or newer): GRUB fell back or booted another kernel",
            )
        preflight = None
        if target.docker:
            try:
                data_root = self.salt.call(
                    node,
                    "pillar.get",
                    "docker:data_root",
                    "/var/lib/docker",
                    kwargs={"unmask": True},
                )
                preflight = self.salt.call(node, "docker_storage.preflight", data_root)
            except Exception as exc:  # noqa: BLE001
                raise self._fail(node, "verify", f"docker preflight: {exc}") from exc
            if not preflight.get("ok"):
                raise self._fail(node, "verify", f"docker preflight: {preflight.get('message')}")
        self._event(
            node, "verify", "ok", running=status["running"], docker_preflight=bool(preflight)
        )
        return status["running"]

    def converge(self, target: Target) -> None:
        node = target.name
        started = self.clock()
        try:
            results = self.salt.apply(
                node, None, pillar=self.options.pillar, timeout=self.options.state_timeout
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "converge", str(exc)) from exc
        failed = _failed_states(results)
        if failed:
            raise self._fail(node, "converge", "; ".join(failed))
        seconds = self.clock() - started
        self.report[node].seconds["converge"] = round(seconds, 1)
        self._event(node, "converge", "ok", changed=_changed(results), seconds=round(seconds, 1))

    def up(self, target: Target) -> None:
        node = target.name
        if not target.agent:
            return
        try:
            was_down = self.salt.call(self.options.scheduler, "mesos.up", node, timeout=120)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(node, "up", str(exc)) from exc
        self._event(node, "up", "ok", was_down=bool(was_down))

    def tasks_back(self, target: Target) -> None:
        """The apps whose tasks the drain stopped run their full healthy count again."""
        node = target.name
        apps = self.stopped.get(node) or []
        if not target.agent or not apps:
            return
        started = self.clock()
        deadline = started + self.options.drain_timeout
        while True:
            short = []
            try:
                for app_id in apps:
                    app = self.salt.call(
                        self.options.scheduler, "marathon_api.app", app_id, timeout=60
                    )
                    counted = "tasksHealthy" if app.get("healthChecks") else "tasksRunning"
                    if app.get(counted, 0) < app.get("instances", 0):
                        short.append(f"{app_id} {app.get(counted, 0)}/{app.get('instances')}")
            except Exception as exc:  # noqa: BLE001
                raise self._fail(node, "tasks", str(exc)) from exc
            if not short:
                break
            if self.clock() >= deadline:
                raise self._fail(
                    node,
                    "tasks",
                    f"the apps whose tasks the drain stopped are not back within "
                    f"{self.options.drain_timeout:g} s (healthy/instances: {', '.join(short)})",
                )
            self.sleep(2)
        seconds = round(self.clock() - started, 1)
        self.report[node].seconds["tasks"] = seconds
        self._event(node, "tasks", "ok", apps=apps, seconds=seconds)

    # --- the run -------------------------------------------------------------------------------

    def run(self, test: bool = False) -> dict[str, Any]:
        """Roll the targets; returns {result, comment, nodes}. test=True stops after the plan."""
        started = self.clock()
        try:
            todo = []
            for target in self.targets:
                found = self.check(target)
                if found:
                    todo.append((target, found))
            for target, found in todo:
                found["predicted"] = self.plan(target)
            if test:
                for target, _found in todo:
                    self.report[target.name].outcome = "planned"
                return self._result(True, started, test=True)
            for target, found in todo:
                node_started = self.clock()
                self.drain(target)
                into = self.install(target)
                self.reboot(target, into)
                self.verify(target, found["release"])
                self.converge(target)
                self.up(target)
                self.tasks_back(target)
                self.report[target.name].outcome = "upgraded"
                self.report[target.name].seconds["out_of_service"] = round(
                    self.clock() - node_started, 1
                )
                self._event(target.name, "done", "ok", **self.report[target.name].seconds)
        except RolloutFailed as exc:
            return self._result(False, started, failure=exc)
        return self._result(True, started)

    def _result(
        self, ok: bool, started: float, failure: RolloutFailed | None = None, test: bool = False
    ) -> dict[str, Any]:
        nodes = {
            name: {"outcome": r.outcome, "steps": r.steps, "seconds": r.seconds}
            for name, r in self.report.items()
        }
        by = {}
        for name, r in self.report.items():
            by.setdefault(r.outcome, []).append(name)
        if failure is not None:
            untouched = by.get("pending", [])
            comment = f"kernel rollout stopped at {failure}" + (
                f"; not touched: {', '.join(untouched)}" if untouched else ""
            )
        elif test:
            comment = (
                f"would upgrade: {', '.join(by.get('planned', [])) or 'none'}; "
                f"skipped: {', '.join(by.get('skipped', [])) or 'none'}"
            )
        else:
            comment = (
                f"upgraded: {', '.join(by.get('upgraded', [])) or 'none'}; "
                f"skipped: {', '.join(by.get('skipped', [])) or 'none'}"
            )
        return {
            "result": ok,
            "comment": comment,
            "nodes": nodes,
            "seconds": round(self.clock() - started, 1),
        }
