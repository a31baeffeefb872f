"""
A rolling kernel upgrade (issue 16; docs/kernel.md): ``saltyard.maintenance.kernel_rollout``
run by the master, with Salt's LocalClient to reach the nodes and the master's event bus for
the minions' start events and the rollout's own events.

``orch.kernel_rollout`` (states/orch/kernel_rollout.sls) calls ``rollout``; an operator watches
with ``salt-run state.event pretty=True`` (tags ``saltyard/kernel/<node>/<step>/<outcome>``)::

    salt-run state.orchestrate orch.kernel_rollout pillar='{"targets": ["lvs1"]}'
"""

from __future__ import annotations

import logging
import time
from typing import Any

try:
    import salt.client
    import salt.pillar
    import salt.utils.event

    from saltyard.maintenance import kernel_rollout

    HAS_SALTYARD = True
except ImportError:  # the master's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "saltyard_kernel"

log = logging.getLogger(__name__)

# Seconds a minion may take over a call beyond its own work (the job's return travels back).
CALL_SLACK = 60
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def __virtual__():
    if not HAS_SALTYARD:
        return False, "saltyard_kernel: the saltyard package is not importable by the master"
    return __virtualname__


class _Salt:
    """kernel_rollout.Salt over LocalClient and the master's event bus."""

    def __init__(self, opts: dict) -> None:
        self.opts = opts
        self.local = salt.client.get_local_client(opts["conf_file"])

    def _one(self, node: str, fun: str, args: list, kwargs: dict | None, timeout: float) -> Any:
        answer = self.local.cmd(
            node, fun, arg=args, kwarg=kwargs or None, timeout=timeout, full_return=True
        )
        if node not in answer:
            raise RuntimeError(f"{node} did not answer {fun} within {timeout:g} s")
        return answer[node]

    def call(
        self, node: str, fun: str, *args: Any, timeout: float = 120, kwargs: dict | None = None
    ) -> Any:
        answer = self._one(node, fun, list(args), kwargs, timeout + CALL_SLACK)
        if answer.get("retcode", 0) != 0:
            raise RuntimeError(f"{fun} on {node}: {answer.get('ret')}")
        return answer.get("ret")

    def apply(
        self,
        node: str,
        sls: str | None,
        *,
        test: bool = False,
        pillar: dict | None = None,
        timeout: float = 1800,
    ) -> dict:
        kwargs: dict[str, Any] = {"test": test}
        if pillar:
            kwargs["pillar"] = pillar
        answer = self._one(node, "state.apply", [sls] if sls else [], kwargs, timeout + CALL_SLACK)
        ret = answer.get("ret")
        if not isinstance(ret, dict):
            # A render error or a refused run comes back as a list of messages.
            raise RuntimeError(f"state.apply {sls or '(highstate)'} on {node}: {ret}")
        return ret

    def reboot(self, node: str, timeout: float) -> float | None:
        before = str(self.call(node, "cmd.run", f"cat {BOOT_ID}", timeout=60)).strip()
        events = salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=True)
        try:
            # Subscribed before the reboot, so the start event cannot be missed.
            events.subscribe(f"salt/minion/{node}/start")
            started = time.monotonic()
            deadline = started + timeout
            # Not waited for: the minion goes down with the node.
            self.local.cmd_async(node, "system.reboot")
            started_again = False
            while time.monotonic() < deadline:
                if not started_again:
                    started_again = (
                        events.get_event(
                            wait=min(5, max(0.1, deadline - time.monotonic())),
                            tag=f"salt/minion/{node}/start",
                            full=True,
                        )
                        is not None
                    )
                    continue
                # The minion of the new boot, not one that had not gone down yet: the boot id
                # changed. It may take a moment after its start event to answer jobs.
                try:
                    now = str(self.call(node, "cmd.run", f"cat {BOOT_ID}", timeout=20)).strip()
                except RuntimeError:
                    now = ""
                if now and now != before:
                    return time.monotonic() - started
                time.sleep(2)
            return None
        finally:
            events.destroy()

    def fire(self, tag: str, data: dict) -> None:
        event = salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=False)
        try:
            event.fire_event(data, tag)
        finally:
            event.destroy()


def _progress(line: str) -> None:
    log.info("saltyard_kernel: %s", line)
    try:
        __jid_event__.fire_event({"message": line}, "progress")
    except NameError:  # called outside a runner job
        pass


def _pillar() -> dict:
    """The master's own pillar (the inventory), as an orchestration sees it."""
    compiler = salt.pillar.get_pillar(
        __opts__, {}, __opts__["id"], saltenv=__opts__.get("saltenv") or "base"
    )
    try:
        pillar = compiler.compile_pillar()
    finally:
        compiler.destroy()
    if pillar.get("_errors"):
        raise ValueError("the master's pillar has errors: " + "; ".join(pillar["_errors"]))
    return pillar


def _failed(message: str, **extra: Any) -> dict:
    # A non-zero retcode fails `salt-run` and the orchestration's step; saltmod.runner also
    # reads "Error" in a returned mapping as a failure.
    __context__["retcode"] = 1
    return dict(extra, Error=message)


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name}={value!r}: expected a number of seconds from {low:g} to {high:g}")
    return float(value)


def _kernel(kernel: Any) -> dict | None:
    """The run's kernel:boot override: package and release strings (the kernel state checks
    them further when it renders, on each node)."""
    if kernel in (None, "", {}):
        return None
    if (
        not isinstance(kernel, dict)
        or set(kernel) - {"package", "release"}
        or not all(isinstance(kernel.get(k), str) and kernel.get(k) for k in ("package", "release"))
    ):
        raise ValueError(
            f"kernel={kernel!r}: expected {{package: <kernel image package>, release: "
            "'<oldest release to run>'}, both quoted strings"
        )
    return dict(kernel)


def _targets(pillar: dict, targets: Any) -> list:
    """The targets as inventory nodes, in the order given; refuses unknown or repeated names."""
    if isinstance(targets, str):
        targets = [t for t in targets.split(",") if t]
    if not isinstance(targets, list) or not targets:
        raise ValueError(
            f"targets={targets!r}: name the nodes to upgrade, in order, e.g. "
            'pillar=\'{"targets": ["lvs1"]}\''
        )
    nodes = {n["name"]: n for n in pillar.get("saltyard", {}).get("nodes", [])}
    unknown = [t for t in targets if t not in nodes]
    if unknown:
        raise ValueError(
            f"targets {unknown} are not in the inventory (nodes: {', '.join(sorted(nodes))})"
        )
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ValueError(f"targets name {repeated} more than once")
    return [kernel_rollout.Target(t, tuple(nodes[t].get("roles", []))) for t in targets]


def rollout(
    targets: Any = None,
    reboot_timeout: float = 600,
    drain_timeout: float = 300,
    accept_downtime: bool = False,
    kernel: dict | None = None,
    test: bool = False,
) -> dict:
    """
    Upgrade the kernel of ``targets`` (inventory node names), one node at a time: drain (Mesos
    agents), apply ``kernel``, reboot, wait for the minion (``reboot_timeout`` seconds), verify
    the running kernel and the docker preflight, highstate, bring the agent up. Nodes already on
    their pillar's ``kernel:boot:release`` are skipped. The first failure stops the run, naming
    the node, the step and why; the nodes after it are untouched. ``kernel``
    (``{package, release}``) rolls that kernel instead of the nodes' pillar ``kernel:boot``.
    ``test=True``: check and plan only (the kernel state in test mode on each node to
    upgrade), nothing changes.

    CLI Example:

    .. code-block:: bash

        salt-run saltyard_kernel.rollout targets='[lvs1]'
        salt-run saltyard_kernel.rollout targets='[lvs1]' test=True
    """
    try:
        pillar = _pillar()
        chosen = _targets(pillar, targets)
        if accept_downtime not in (True, False):
            raise ValueError(f"accept_downtime={accept_downtime!r}: expected true or false")
        schedulers = pillar.get("saltyard", {}).get("members", {}).get("marathon", [])
        options = kernel_rollout.Options(
            scheduler=schedulers[0]["name"] if schedulers else None,
            reboot_timeout=_number("reboot_timeout", reboot_timeout, 5, 3600),
            drain_timeout=_number("drain_timeout", drain_timeout, 10, 3600),
            accept_downtime=accept_downtime,
            kernel=_kernel(kernel),
        )
    except ValueError as exc:
        return _failed(str(exc))
    run = kernel_rollout.Rollout(_Salt(__opts__), chosen, options, progress=_progress)
    result = run.run(test=bool(test))
    if not result["result"]:
        return _failed(result["comment"], nodes=result["nodes"])
    return result
