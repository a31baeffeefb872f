"""orch.kernel_rollout on a Mesos agent: agent-vm, a QEMU VM that boots through the GRUB on its
own disk, runs Docker and takes tasks, and shares the prod env with agent-prod (issue 16). It
boots the image's 6.1; the run names the 6.12 series (kernel_rollout:kernel), which the local
site's pillar leaves out for agent-vm, so that only the rollout installs it.

agent-vm's resources are reserved for the role vm-agents (salt/inventory.yaml), and Marathon
gives an app unreserved resources unless it accepts that role. Two apps in prod, of tinyweb
(tests/support/tinyweb: a 6 MB image; the 408 MB node image takes minutes to unpack under
emulation):

- kernel-web, two tasks, accepting both: one lands on agent-prod, one on agent-vm. Its task on
  agent-vm can move to agent-prod.
- kernel-pinned, one task, accepting only vm-agents: it has nowhere else to go.

In order (they build on each other): the rollout refuses at its plan (the drain's check),
naming kernel-pinned, with nothing changed; with accept_downtime, the rollout moves
kernel-web's task to agent-prod with no failed request through lb1 while it drains (vegeta at a
constant rate from the plan's end until the drain is done), installs 6.12, reboots agent-vm into
it, converges it, brings the agent up and waits for kernel-pinned to run again; a highstate then
changes nothing and agent-vm takes tasks again; a second rollout changes and reboots nothing."""

from __future__ import annotations

import json
import shlex
import time

import pytest
import requests

from saltyard.localcluster import vegeta
from tests.convergence.helpers import KERNEL_PINNED, KERNEL_WEB, orchestration_steps, vm_agent_apps
from tests.convergence.release_run import Events
from tests.support import tinyweb
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

WEB, PINNED = KERNEL_WEB, KERNEL_PINNED
WEB_HOST = "kernel-web.prod.saltyard.test"  # the bridge's service name: the id, / -> -
KERNEL = {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}
OLD_SERIES = "6.1."
NEW_SERIES = "6.12."
RATE = 50


@pytest.fixture(scope="module")
def agent_vm(cluster, converged) -> str:
    found = [n.name for n in cluster.nodes if n.is_vm and n.has_role("mesos-agent")]
    if not found:
        pytest.skip("no mesos-agent VM in this profile (profile full has agent-vm)")
    return found[0]


@pytest.fixture(scope="module")
def control(cluster, converged) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


@pytest.fixture(scope="module")
def lb(cluster, converged) -> str:
    return next(n.address for n in cluster.nodes if n.has_role("lb"))


def present(cluster, control: str, definition: dict) -> None:
    out = cluster.salt(
        [control],
        "state.single",
        "marathon_application.present",
        f"name={definition['id']}",
        f"app={json.dumps(definition)}",
        "timeout=300",
    )[control]
    (ret,) = out.values()
    assert ret["result"] is True, ret


def healthy_hosts(cluster, control: str, app_id: str) -> list[str]:
    return sorted(
        t["host"]
        for t in cluster.salt([control], "marathon_api.tasks", app_id)[control]
        if t.get("healthCheckResults") and all(h["alive"] for h in t["healthCheckResults"])
    )


def placed(cluster, control: str) -> dict[str, str]:
    return {
        t["id"]: t["host"]
        for app_id in (WEB, PINNED)
        for t in cluster.salt([control], "marathon_api.tasks", app_id)[control]
    }


def served(lb: str) -> bool:
    try:
        return requests.get(f"http://{lb}/", headers={"Host": WEB_HOST}, timeout=5).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def apps(cluster, control, lb, agent_vm):
    image = cluster.push_image("saltyard-test/tinyweb:1", tinyweb.image(cluster.engine))
    for definition in vm_agent_apps(image):
        present(cluster, control, definition)
    try:
        wait_until(
            lambda: healthy_hosts(cluster, control, WEB) == sorted(["agent-prod", agent_vm])
            and healthy_hosts(cluster, control, PINNED) == [agent_vm],
            300,
            2,
            f"{WEB} healthy on agent-prod and {agent_vm}, {PINNED} on {agent_vm}",
        )
        wait_until(lambda: served(lb), 90, 1, f"lb1 serving {WEB_HOST}")
        yield image
    finally:
        for app_id in (WEB, PINNED):
            cluster.salt(
                [control],
                "state.single",
                "marathon_application.absent",
                f"name={app_id}",
                "force=True",
            )


def orchestrate(cluster, pillar: dict) -> tuple[int, str]:
    master = cluster.inventory.master.name
    pillar = {"kernel_rollout": {"kernel": KERNEL}, **pillar}
    cmd = ["salt-run", "--out=json", "state.orchestrate", "orch.kernel_rollout"]
    return cluster.exec(master, [*cmd, f"pillar={json.dumps(pillar)}"], check=False)


def node_kernel(cluster, node: str) -> dict:
    _, out = cluster.exec(node, ["sh", "-c", "uname -r; cat /proc/sys/kernel/random/boot_id"])
    release, boot = out.split()
    return {"release": release, "boot_id": boot}


def packages(cluster, node: str) -> set[str]:
    _, out = cluster.exec(node, ["dpkg-query", "-W", "-f=${Package}\\n"])
    return set(out.split())


def recommends(cluster, node: str, packages: set[str]) -> set[str]:
    """The package names in these packages' Recommends fields (alternatives included)."""
    _, out = cluster.exec(node, ["apt-cache", "show", "--no-all-versions", *sorted(packages)])
    names = [
        name
        for line in out.splitlines()
        if line.startswith("Recommends:")
        for name in line.removeprefix("Recommends:").replace("|", ",").split(",")
    ]
    return {n.split("(")[0].strip().split(":")[0] for n in names if n.strip()}


def maintenance(cluster, control: str) -> dict:
    return cluster.salt([control], "mesos.maintenance_status")[control]


def test_a_drain_with_nowhere_to_go_is_refused_before_anything_changes(
    cluster, control, agent_vm, apps
):
    before, where = node_kernel(cluster, agent_vm), placed(cluster, control)
    assert before["release"].startswith(OLD_SERIES), before
    code, text = orchestrate(cluster, {"targets": [agent_vm]})
    assert code != 0, text
    # Refused at the plan, before any node of the run is touched (mesos.drain_check).
    assert f"{agent_vm}: plan failed" in text, text
    assert f"refusing to drain {agent_vm}" in text and PINNED in text, text
    assert "accept_downtime" in text, text
    assert maintenance(cluster, control) == {"draining_machines": [], "down_machines": []}
    assert placed(cluster, control) == where
    assert node_kernel(cluster, agent_vm) == before


def _wait_for_event(events: Events, tag: str, timeout: float) -> None:
    wait_until(lambda: tag in events.tags(), timeout, 1, f"event {tag}")


def test_the_rollout_moves_the_tasks_boots_the_new_kernel_and_takes_tasks_again(
    cluster, control, lb, agent_vm, apps, tmp_path
):
    before = node_kernel(cluster, agent_vm)
    packages_before = packages(cluster, agent_vm)
    events = Events(cluster, "kernel-rollout-agent", "saltyard/kernel/*")
    master = cluster.inventory.master.name
    cmd = ["salt-run", "--out=json", "state.orchestrate", "orch.kernel_rollout"]
    pillar = {"kernel_rollout": {"kernel": KERNEL}, "targets": [agent_vm], "accept_downtime": True}
    cmd.append(f"pillar={json.dumps(pillar)}")
    # The orchestration runs on the master in the background; the load starts when the plan is
    # done (the drain follows at once) and stops when the drain is: the window the issue asks
    # about. Before the plan, the VM is busy with its emulated apt-get update.
    log = "/tmp/kernel-rollout-agent.json"
    run = f"{shlex.join(cmd)} > {log} 2>&1; echo $? > {log}.rc"
    cluster.exec(master, ["rm", "-f", log, f"{log}.rc"])
    cluster.exec(master, ["sh", "-c", f"nohup sh -c {shlex.quote(run)} >/dev/null 2>&1 &"])
    load = None
    try:
        _wait_for_event(events, f"saltyard/kernel/{agent_vm}/plan/ok", 600)
        load = vegeta.Attack(
            f"http://{lb}/", host=WEB_HOST, rate=RATE, duration=300, workdir=tmp_path
        )
        _wait_for_event(events, f"saltyard/kernel/{agent_vm}/drain/ok", 300)
        time.sleep(5)  # and a few seconds past it: the moved task serves alone
        load.stop()
        result = load.result()
        load = None
        wait_until(
            lambda: cluster.exec(master, ["test", "-s", f"{log}.rc"], check=False)[0] == 0,
            900,
            5,
            "the rollout's end",
        )
        tags = events.tags()
    finally:
        if load is not None:
            load.stop()
        events.stop()
    _, text = cluster.exec(master, ["cat", log])
    _, rc = cluster.exec(master, ["cat", f"{log}.rc"])
    assert rc.strip() == "0", text
    print(f"load through lb1 while {agent_vm} drained: {result.summary()}")
    assert result.requests >= RATE * 5, result.summary()
    assert result.failed == 0, (result.summary(), result.failures[:10])

    (step,) = orchestration_steps(text).values()
    ret = step["changes"]["return"]
    assert ret["comment"] == f"upgraded: {agent_vm}; skipped: none", ret
    print(f"kernel rollout of {agent_vm}: {ret['nodes'][agent_vm]['seconds']}")
    for step_outcome in (
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
    ):
        assert f"saltyard/kernel/{agent_vm}/{step_outcome}" in tags, tags

    after = node_kernel(cluster, agent_vm)
    assert after["release"].startswith(NEW_SERIES), after
    assert after["boot_id"] != before["boot_id"]
    # GRUB on the VM's disk booted it (no QEMU -kernel), from the kernel role's install, which
    # left out the packages' Recommends (the kernel's is apparmor, which would confine the
    # node's services). The image bakes apparmor for the docker role, so the checks are on what
    # the install added and on the command apt ran.
    _, cmdline = cluster.exec(agent_vm, ["cat", "/proc/cmdline"])
    assert f"BOOT_IMAGE=/boot/vmlinuz-{after['release']} " in cmdline, cmdline
    added = packages(cluster, agent_vm) - packages_before
    assert KERNEL["package"] in added, added
    assert not added & recommends(cluster, agent_vm, added), added
    _, history = cluster.exec(agent_vm, ["cat", "/var/log/apt/history.log"])
    installs = [
        line
        for line in history.splitlines()
        if line.startswith("Commandline:") and KERNEL["package"] in line
    ]
    assert installs and "--no-install-recommends" in installs[-1], installs
    # The agent is up again and takes tasks: the pinned app runs there again (the tasks step
    # waited for it), and kernel-web's moved task stayed on agent-prod.
    assert maintenance(cluster, control) == {"draining_machines": [], "down_machines": []}
    assert healthy_hosts(cluster, control, PINNED) == [agent_vm]
    assert healthy_hosts(cluster, control, WEB) == ["agent-prod", "agent-prod"]
    assert served(lb)

    # Converged: a highstate on the new kernel changes nothing.
    applied = cluster.salt([agent_vm], "state.apply")[agent_vm]
    changed = {k: v["changes"] for k, v in applied.items() if v["changes"]}
    assert changed == {}, changed
    assert all(v["result"] for v in applied.values()), applied
    status = cluster.salt([agent_vm], "kernel_boot.status")[agent_vm]
    assert status["running"] == after["release"] and status["reboot_required"] is False, status


def test_a_second_rollout_changes_and_reboots_nothing(cluster, control, agent_vm, apps):
    before, where = node_kernel(cluster, agent_vm), placed(cluster, control)
    code, text = orchestrate(cluster, {"targets": [agent_vm]})
    assert code == 0, text
    assert f"upgraded: none; skipped: {agent_vm}" in text, text
    assert node_kernel(cluster, agent_vm) == before
    assert placed(cluster, control) == where
