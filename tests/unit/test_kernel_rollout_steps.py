"""The rollout's sequence for an agent (saltyard/maintenance/kernel_rollout.py) against a fake
Salt that answers as the nodes would: drain, install, reboot, verify, converge, up, and the wait
for the tasks the drain stopped (downtime accepted) to be back. The whole rollout runs for real
on the local cluster (tests/convergence/test_kernel_rollout*.py); this pins the order and the
tasks-back wait, which needs an app whose downtime is accepted."""

from __future__ import annotations

import pytest

from saltyard.maintenance.kernel_rollout import Options, Rollout, Target

NODE, SCHEDULER = "agent-vm", "control1"


class FakeSalt:
    def __init__(self, back_after: int, stopped: dict | None | str = "default"):
        self.calls: list[str] = []
        self.events: list[str] = []
        self.rebooted = False
        self.ups = 0
        self.app_reads = 0
        self.back_after = back_after  # reads of the app before it is whole again
        self.stopped = {"/prod/pinned": "only here"} if stopped == "default" else stopped

    def call(self, node, fun, *args, timeout=None, kwargs=None):
        self.calls.append(f"{node}:{fun}")
        if fun == "kernel_boot.status":
            if self.rebooted:
                return {"running": "6.12.1", "default": "6.12.1", "reboot_required": False}
            installed = any(c == f"{NODE}:state.apply kernel" for c in self.calls)
            return {
                "running": "6.1.0",
                "default": "6.12.1" if installed else "6.1.0",
                "reboot_required": installed,
                "container": False,
            }
        if fun == "pillar.get":
            return "/var/lib/docker" if args[0] == "docker:data_root" else {}
        if fun == "kernel_check.compare":
            return 1 if args[0].startswith("6.12") else -1
        if fun == "mesos.drain_check":
            if self.stopped and not kwargs.get("accept_downtime"):
                raise RuntimeError(f"refusing to drain {NODE}: {sorted(self.stopped)}")
            return {"mode": "UP", "move": ["/prod/web"], "stop": self.stopped or {}}
        if fun == "mesos.drain":
            return {"moved": [{}], "stopped": ["t1"], "downtime_accepted": self.stopped}
        if fun == "docker_storage.preflight":
            return {"ok": True}
        if fun == "mesos.up":
            self.ups += 1
            return True
        if fun == "marathon_api.app":
            self.app_reads += 1
            healthy = 1 if self.app_reads > self.back_after else 0
            return {"instances": 1, "tasksHealthy": healthy, "healthChecks": [{}]}
        raise AssertionError(f"unexpected call {fun}")

    def apply(self, node, sls, *, test=False, pillar=None, timeout=None):
        self.calls.append(f"{node}:state.apply {sls}" + (" test" if test else ""))
        return {"kernel-boot": {"result": True, "changes": {} if test else {"x": 1}}}

    def reboot(self, node, timeout):
        self.calls.append(f"{node}:reboot")
        self.rebooted = True
        return 42.0

    def fire(self, tag, data):
        self.events.append(tag)


def run(salt: FakeSalt, drain_timeout: float = 300, accept_downtime: bool = True) -> dict:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    rollout = Rollout(
        salt,
        [Target(NODE, ("mesos-agent", "docker", "kernel"))],
        Options(
            scheduler=SCHEDULER,
            drain_timeout=drain_timeout,
            accept_downtime=accept_downtime,
            kernel={"package": "linux-image-6.12-cloud-amd64", "release": "6.12"},
        ),
        clock=lambda: now[0],
        sleep=sleep,
    )
    return rollout.run()


def steps(salt: FakeSalt) -> list[str]:
    return [t.removeprefix(f"saltyard/kernel/{NODE}/") for t in salt.events]


def test_an_agent_waits_for_the_tasks_its_drain_stopped_before_it_is_done():
    salt = FakeSalt(back_after=2)
    result = run(salt)
    assert result["result"] is True, result
    assert steps(salt) == [
        "check/upgrade",
        "plan/ok",
        "drain/ok",
        "install/ok",
        "reboot/started",
        "reboot/ok",
        "verify/ok",
        "converge/ok",
        "up/ok",
        "tasks/ok",
        "done/ok",
    ]
    assert salt.app_reads == 3  # twice short, then whole
    assert result["nodes"][NODE]["seconds"]["tasks"] == 4.0  # two waits of 2 s


def test_tasks_that_do_not_come_back_fail_the_run_naming_the_app():
    salt = FakeSalt(back_after=10**6)
    result = run(salt, drain_timeout=10)
    assert result["result"] is False
    assert steps(salt)[-1] == "tasks/failed"
    assert "/prod/pinned 0/1" in result["comment"] and "within 10 s" in result["comment"]
    assert salt.ups == 1  # the agent is up: only the wait failed


@pytest.mark.parametrize("stopped", [{}, None])
def test_nothing_to_wait_for_when_the_drain_moved_every_task(stopped):
    salt = FakeSalt(back_after=0, stopped=stopped)
    result = run(salt)
    assert result["result"] is True
    assert "tasks/ok" not in steps(salt) and salt.app_reads == 0


def test_a_drain_with_nowhere_to_go_is_refused_at_the_plan_before_any_work():
    salt = FakeSalt(back_after=0)
    result = run(salt, accept_downtime=False)
    assert result["result"] is False
    assert steps(salt) == ["check/upgrade", "plan/failed"]
    assert "refusing to drain agent-vm" in result["comment"], result
    assert "nothing was drained or changed" in result["comment"], result
    # Refused before the kernel state's test run (apt's work) and before any change.
    assert not any("state.apply" in c or "mesos.drain" == c.split(":")[1] for c in salt.calls)


def test_the_plan_says_what_the_drain_would_move_and_stop():
    salt = FakeSalt(back_after=0)
    run(salt)
    plan = next(c for c in salt.calls if c.endswith("mesos.drain_check"))
    assert plan == f"{SCHEDULER}:mesos.drain_check"
    # The check comes before the kernel state's test run.
    assert salt.calls.index(plan) < salt.calls.index(f"{NODE}:state.apply kernel test")
