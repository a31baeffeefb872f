"""Benchmark: a kernel rollout of a VM node of the local cluster (orch.kernel_rollout).

    .venv/bin/python benchmarks/kernel_rollout.py [--node agent-vm] [--runs 2]

Needs a running, converged local cluster (`make up`). Each run first puts the node back on the
image's kernel (the newest installed 6.1 made GRUB's default, then a reboot), and the first run
also removes the 6.12 kernel, so that it installs it from apt as a first rollout does; later
runs find it installed (a node whose earlier rollout stopped after the install). Then it runs
the orchestration and prints the whole time, and from the run's own report: the install (apt,
initramfs, GRUB), the wait for the reboot (from the reboot to the minion answering from the
new boot), the verification and highstate, and the time the node was out of service (from its
first step of work to the end: for an agent, drain start to its stopped tasks healthy again).

On agent-vm (the default) the drain and the tasks' return are timed too. Before each run the
benchmark deploys the cluster test's two tinyweb apps in prod (tests/convergence/helpers.py,
vm_agent_apps): /kernel/web with a task on agent-prod and one on agent-vm, which the drain moves,
and /kernel/pinned, only on agent-vm, whose downtime the run accepts: its task stops with the
drain and the run waits for it to be healthy again after the agent is up. It removes both at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

# Run as a script from the checkout: the test support (tinyweb, the apps) lives under tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from saltyard.localcluster import vm  # noqa: E402
from saltyard.localcluster.cluster import Cluster  # noqa: E402
from tests.convergence.helpers import vm_agent_apps  # noqa: E402
from tests.support import tinyweb  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

KERNEL = {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}


def kernel_of(cluster: Cluster, node: str) -> str:
    return cluster.exec(node, ["uname", "-r"])[1].strip()


def back_to_old_kernel(cluster: Cluster, node: str, remove_new: bool) -> str:
    status = cluster.salt([node], "kernel_boot.status")[node]
    old = [r for r in status["installed"] if r.startswith("6.1.")][-1]
    if status["running"] != old or status["default"] != old:
        cluster.salt([node], "kernel_boot.set_default", old)
        vm.reboot(node, vm.STATE_DIR, timeout=900)
        cluster.wait_minions(timeout=300)
    if remove_new:
        cluster.exec(
            node,
            [
                "sh",
                "-c",
                "DEBIAN_FRONTEND=noninteractive apt-get -q -y purge "
                "'linux-image-6.12*' >/dev/null && update-grub 2>/dev/null",
            ],
        )
    return kernel_of(cluster, node)


def marathon_node(cluster: Cluster) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


def deploy_apps(cluster: Cluster, node: str) -> list[str]:
    """The tinyweb apps on the agent, each task healthy; returns their ids."""
    control = marathon_node(cluster)
    image = cluster.push_image("saltyard-test/tinyweb:1", tinyweb.image(cluster.engine))
    apps = vm_agent_apps(image)
    for app in apps:
        out = cluster.salt(
            [control],
            "state.single",
            "marathon_application.present",
            f"name={app['id']}",
            f"app={json.dumps(app)}",
            "timeout=300",
        )[control]
        (ret,) = out.values()
        if ret["result"] is not True:
            raise SystemExit(f"{app['id']}: {ret['comment']}")

    def on_the_agent() -> bool:
        hosts = [
            t["host"]
            for app in apps
            for t in cluster.salt([control], "marathon_api.tasks", app["id"])[control]
            if t.get("healthCheckResults") and all(h["alive"] for h in t["healthCheckResults"])
        ]
        return hosts.count(node) == 2 and len(hosts) == 3

    wait_until(on_the_agent, 300, 2, f"two healthy tasks on {node}, one elsewhere")
    return [app["id"] for app in apps]


def remove_apps(cluster: Cluster, app_ids: list[str]) -> None:
    control = marathon_node(cluster)
    for app_id in app_ids:
        cluster.salt(
            [control], "state.single", "marathon_application.absent", f"name={app_id}", "force=True"
        )


def rollout(cluster: Cluster, node: str) -> tuple[float, dict]:
    # The kernel named by the run: the local site gives agent-vm no kernel:boot of its own.
    pillar = {"targets": [node], "accept_downtime": True, "kernel_rollout": {"kernel": KERNEL}}
    started = time.monotonic()
    # Salt's warnings go to stderr, which the exec interleaves with the JSON on stdout (a
    # warning once landed inside it): kept apart in a file, and shown when the run fails.
    errors = "/tmp/saltyard-kernel-rollout-bench.err"
    command = shlex.join(
        [
            "salt-run",
            "--out=json",
            "state.orchestrate",
            "orch.kernel_rollout",
            f"pillar={json.dumps(pillar)}",
        ]
    )
    code, text = cluster.exec(
        cluster.inventory.master.name, ["sh", "-c", f"{command} 2>{errors}"], check=False
    )
    took = time.monotonic() - started
    if code != 0:
        _, stderr = cluster.exec(cluster.inventory.master.name, ["cat", errors], check=False)
        raise SystemExit(f"the rollout failed:\n{text}\n{stderr}")
    # Warnings printed to stdout may come first, some with braces of their own.
    decoder, start = json.JSONDecoder(), text.find("{")
    while start >= 0:
        try:
            result = decoder.raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict) and "data" in result:
            # {minion id of the master: {state key: the step}}
            ((step,),) = (states.values() for states in result["data"].values())
            if "return" not in step.get("changes", {}):
                raise SystemExit(f"the rollout returned no report: {json.dumps(step, indent=2)}")
            return took, step["changes"]["return"]["nodes"][node]
        start = text.find("{", start + 1)
    raise SystemExit(f"no orchestration result in:\n{text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="agent-vm")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    cluster = Cluster()
    print(f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    agent = cluster.inventory.node(args.node).has_role("mesos-agent")
    for run in range(1, args.runs + 1):
        before = back_to_old_kernel(cluster, args.node, remove_new=run == 1)
        app_ids = deploy_apps(cluster, args.node) if agent else []
        load = os.getloadavg()[0]
        try:
            took, report = rollout(cluster, args.node)
        finally:
            remove_apps(cluster, app_ids)
        after = kernel_of(cluster, args.node)
        s = report["seconds"]
        parts = ["drain", "install", "reboot", "converge", "tasks"]
        checks = s["out_of_service"] - sum(s.get(part, 0) for part in parts)
        names = {"reboot": "reboot wait", "converge": "highstate", "tasks": "tasks back"}
        detail = " + ".join(
            f"{names.get(part, part)} {s[part]:.1f} s" for part in parts if part in s
        )
        print(
            f"run {run}: {args.node} {before} -> {after}, load {load:.1f}: whole rollout "
            f"{took:.0f} s; out of service {s['out_of_service']:.1f} s = {detail} + checks "
            f"{checks:.1f} s; waiting for the reboot: {s['reboot']:.1f} s"
        )


if __name__ == "__main__":
    main()
