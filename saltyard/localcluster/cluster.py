"""Bring the local cluster up and down, and talk to its salt master.

up:   inventory check -> node image (and VM image) -> network -> VMs boot -> `vagrant up`
      (containers) -> VMs answer SSH -> wheelhouse and keys -> pyinfra bootstrap -> every minion
      answers -> highstate
down: the VMs, `vagrant destroy`, then the containers, volumes and network that carry the
      cluster's label

Nodes of kind vm (saltyard/localcluster/vm.py) are reached over SSH, containers with
`docker exec`; `exec` hides the difference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from docker import errors as docker_errors

from saltyard import bootstrap
from saltyard import inventory as inventory_mod
from saltyard.localcluster import engine as engine_mod
from saltyard.localcluster import image, vm
from saltyard.localcluster.progress import step

ROOT = Path(__file__).resolve().parent.parent.parent
STATE_DIR = ROOT / ".state"
# Seconds the salt CLI waits for a highstate (see Cluster.highstate).
HIGHSTATE_TIMEOUT = 2400
# The release builds' base image in the cluster registry (pillar/release/hello.sls: base): the
# node image, which `up` pushes there.
RELEASE_BASE = "saltyard/base:bookworm"
# While a highstate runs, a line this often names the nodes not done yet.
HIGHSTATE_PROGRESS_SECONDS = 120


def container_name(node: str) -> str:
    return f"saltyard-{node}"


def _run_logged(command: list[str], env: dict[str, str], log: Path) -> int:
    """Run a command with its output shown live and appended to ``log`` (CI shows only the end
    of a run's output: the file keeps what a failure said)."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
        return proc.wait()


@dataclass
class HighstateResult:
    """One minion's state run, summarised."""

    minion: str
    ok: bool
    states: int
    changed: list[str]
    failed: list[str]
    errors: list[str]
    seconds: float
    raw: object

    def describe(self) -> str:
        if self.errors:
            return f"{self.minion}: ERROR " + "; ".join(self.errors)
        text = f"{self.minion}: {self.states} states, {len(self.changed)} changed"
        if self.failed:
            text += f", {len(self.failed)} FAILED: " + "; ".join(self.failed)
        return text + f" ({self.seconds:.1f} s)"


def summarise(minion: str, ret: object, seconds: float = 0.0) -> HighstateResult:
    if not isinstance(ret, dict):
        # Salt returns a list of strings for render and pillar errors.
        errors = ret if isinstance(ret, list) else [str(ret)]
        return HighstateResult(minion, False, 0, [], [], [str(e) for e in errors], seconds, ret)
    changed, failed = [], []
    for key, state in ret.items():
        if not isinstance(state, dict):
            return HighstateResult(minion, False, 0, [], [], [f"{key}: {state}"], seconds, ret)
        label = f"{state.get('__id__', key)} ({key.split('_|-')[0]})"
        if state.get("result") is False:
            failed.append(f"{label}: {state.get('comment')}")
        if state.get("changes"):
            changed.append(label)
    return HighstateResult(minion, not failed, len(ret), changed, failed, [], seconds, ret)


class Cluster:
    def __init__(self, profile: str = "full", inventory_path: str | None = None) -> None:
        self.inventory = inventory_mod.load(inventory_path)
        self.profile = profile
        self.nodes = self.inventory.profile(profile)
        self.vms = [n for n in self.nodes if n.is_vm]
        self.engine = engine_mod.client()
        self.container_exec = engine_mod.ContainerExec()

    # --- running commands --------------------------------------------------------------------
    def exec(self, node: str, cmd: list[str], check: bool = True) -> tuple[int, str]:
        if self.inventory.node(node).is_vm:
            proc = vm.ssh(node, cmd, STATE_DIR)
            code, text = proc.returncode, proc.stdout
        else:
            container = self.engine.containers.get(container_name(node))
            code, text = self.container_exec.run(container, cmd)
        if check and code != 0:
            raise RuntimeError(f"{node}: {' '.join(cmd)} exited {code}:\n{text}")
        return code, text

    def salt(self, target: list[str], *args: str, timeout: int = 900) -> dict:
        """Run `salt -L target ...` on the master; return {minion: return}."""
        cmd = [
            "salt",
            "--out=json",
            "--static",
            f"--timeout={timeout}",
            "-L",
            ",".join(target),
            *args,
        ]
        code, text = self.exec(self.inventory.master.name, cmd, check=False)
        if "No minions matched the target" in text:
            return {}
        # Salt may print a line such as "ERROR: No return received" before or after the JSON.
        start = text.find("{")
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0] if start >= 0 else {}
        except json.JSONDecodeError:
            raise RuntimeError(
                f"salt {' '.join(args)} exited {code} and printed:\n{text}"
            ) from None

    def runner(self, *args: str):
        """`salt-run --out=json ...` on the master; its JSON return (None when it printed none).
        Salt may print warnings around the JSON, some starting with "[" too ("[WARNING ]")."""
        _, text = self.exec(self.inventory.master.name, ["salt-run", "--out=json", *args], False)
        lines = text.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.startswith(("[", "{")):
                try:
                    return json.JSONDecoder().raw_decode("".join(lines[index:]))[0]
                except json.JSONDecodeError:
                    continue
        return None

    def pillar(self, node: str, key: str):
        """One pillar value of `node`, unmasked (Salt 3008 masks pillar.get output outside
        templates); None when the minion does not answer."""
        return self.salt([node], "pillar.get", key, "unmask=True").get(node)

    def highstate(
        self, nodes: list[str] | None = None, *extra: str, report=None
    ) -> dict[str, HighstateResult]:
        """A highstate on each node, one salt CLI per node, all at once: each node's result
        (and its own time) is known when that node is done, not when the slowest is.
        ``report(result)`` is called as each node finishes; while any runs, a line every
        ``HIGHSTATE_PROGRESS_SECONDS`` names the nodes still running."""
        nodes = nodes or [n.name for n in self.nodes]
        started = time.monotonic()

        def one(node: str) -> HighstateResult:
            # A first highstate on a QEMU node without KVM (lvs1) took up to 15 min of wall
            # time in session 6 (apt under TCG), past the salt CLI's usual 900 s.
            rets = self.salt([node], "state.highstate", *extra, timeout=HIGHSTATE_TIMEOUT)
            seconds = time.monotonic() - started
            if node not in rets:
                return HighstateResult(node, False, 0, [], [], ["no answer"], seconds, None)
            return summarise(node, rets[node], seconds)

        results: dict[str, HighstateResult] = {}
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            running = {pool.submit(one, node): node for node in nodes}
            while running:
                # FIRST_COMPLETED: a node is reported when it is done (wait's default,
                # ALL_COMPLETED, held every report back to the next progress line).
                done, _ = wait(
                    running, timeout=HIGHSTATE_PROGRESS_SECONDS, return_when=FIRST_COMPLETED
                )
                for future in done:
                    result = future.result()
                    results[running.pop(future)] = result
                    if report:
                        report(result)
                if running and not done:
                    minutes = (time.monotonic() - started) / 60
                    step(
                        f"highstate still running on {', '.join(sorted(running.values()))} "
                        f"({minutes:.0f} min)"
                    )
        return {node: results[node] for node in nodes}

    # --- bringing it up ----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SALTYARD_PROFILE"] = self.profile
        env["SALTYARD_PYTHON"] = sys.executable
        if self.inventory.path != str(inventory_mod.DEFAULT_PATH):
            env["SALTYARD_INVENTORY"] = self.inventory.path
        return env

    def _refuse_foreign_nodes(self) -> None:
        """Node containers made from another checkout would clash by name with ours."""
        label = f"saltyard.cluster={self.inventory.name}"
        for container in self.engine.containers.list(all=True, filters={"label": label}):
            checkout = container.labels.get("saltyard.checkout")
            if checkout != str(ROOT):
                raise RuntimeError(
                    f"container {container.name} belongs to a local cluster brought up from "
                    f"{checkout or 'another checkout'}; remove that cluster first "
                    "(`make down` removes every node of the cluster, whichever checkout made it)"
                )

    def vagrant_up(self, node_image: str) -> None:
        self._refuse_foreign_nodes()
        names = [n.name for n in self.nodes if not n.is_vm]
        if not names:
            return
        step(f"vagrant up ({len(names)} nodes, docker provider): {', '.join(names)}")
        env = self._env() | {"SALTYARD_NODE_IMAGE": node_image}
        log = STATE_DIR / "vagrant-up.log"
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        missing = names
        # Vagrant's docker provider sometimes loses track of a container it just created when
        # many are created in parallel ("No such object"), and a CI run once saw one node stay
        # "preparing" through a second parallel pass. `vagrant up` is idempotent: the nodes not
        # running after a pass get their strays removed and one more pass each, one at a time.
        for attempt, parallel in enumerate((True, False, False), start=1):
            mode = "--parallel" if parallel else "--no-parallel"
            command = ["vagrant", "up", "--provider=docker", mode, *missing]
            returncode = _run_logged(command, env, log)
            missing = [name for name in names if not self._container_running(name)]
            if returncode == 0 and not missing:
                break
            if not missing:
                # Every node runs, though Vagrant said otherwise: its own bookkeeping failed.
                step(f"vagrant up exit {returncode}, every node running; going on")
                break
            step(
                f"vagrant up pass {attempt} ({mode}) exit {returncode}; not running: "
                f"{', '.join(missing)}"
            )
            for name in missing:
                self._forget_node(name)
        if missing:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            raise RuntimeError(
                f"vagrant up could not start {', '.join(missing)} in 3 passes "
                f"(whole log: {log}); its last lines:\n{tail}"
            )
        for node in names:
            self._wait_systemd(node)

    def _container_running(self, node: str) -> bool:
        try:
            container = self.engine.containers.get(container_name(node))
        except docker_errors.NotFound:
            return False
        return container.status == "running"

    def _forget_node(self, node: str) -> None:
        """A node Vagrant failed to start, made new: its container (if any) and Vagrant's record
        of it go, so that the next pass creates it from scratch instead of meeting a name in use
        or an id Docker does not know."""
        try:
            self.engine.containers.get(container_name(node)).remove(force=True, v=True)
            step(f"removed {container_name(node)}, left by the failed pass")
        except docker_errors.NotFound:
            pass
        record = ROOT / ".vagrant" / "machines" / node
        if record.exists():
            shutil.rmtree(record)

    def start_vms(self) -> None:
        """Boot the VMs; they boot while Vagrant makes the containers (wait_vms waits)."""
        for node in self.vms:
            vm.start(node, self.inventory, STATE_DIR)

    def wait_vms(self) -> None:
        for node in self.vms:
            vm.wait_ssh(node.name, STATE_DIR)
            self._wait_systemd(node.name)

    def _wait_systemd(self, node: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            _, state = self.exec(node, ["systemctl", "is-system-running"], check=False)
            if state.strip() in ("running", "degraded"):
                return
            time.sleep(1)
        raise RuntimeError(f"{node}: systemd did not finish booting in {timeout:.0f} s ({state})")

    def bootstrap(self) -> None:
        bootstrap.run("docker", self.profile, STATE_DIR, env=self._env())

    def wait_minions(self, timeout: float = 180) -> None:
        names = [n.name for n in self.nodes]
        step(f"waiting for {len(names)} minions to answer the master")
        deadline = time.monotonic() + timeout
        missing = names
        started = time.monotonic()
        # manage.up, not `salt test.ping`: the CLI waits the master's gather_job_timeout (60 s,
        # for the emulated VM's long jobs) after its timeout whenever a minion has not answered,
        # and one that is still connecting missed the ping; every such round cost 70 s.
        args = [
            "manage.up",
            f"tgt={','.join(names)}",
            "tgt_type=list",
            "timeout=10",
            "gather_job_timeout=5",
        ]
        while time.monotonic() < deadline:
            up = self.runner(*args)
            missing = [n for n in names if n not in (up or [])]
            if not missing:
                step(f"every minion answers ({time.monotonic() - started:.0f} s)")
                return
            time.sleep(2)
        raise RuntimeError(f"minions did not answer in {timeout:.0f} s: {', '.join(missing)}")

    def sync(self, nodes: list[str] | None = None) -> None:
        """Custom modules, states and pillar modules from the checkout onto the minions."""
        nodes = nodes or [n.name for n in self.nodes]
        started = time.monotonic()
        rets = self.salt(nodes, "saltutil.sync_all", "refresh=True")
        missing = [n for n in nodes if n not in rets]
        if missing:
            raise RuntimeError(f"saltutil.sync_all got no answer from {', '.join(missing)}")
        step(f"custom modules synced to {len(nodes)} minions ({time.monotonic() - started:.0f} s)")

    def push_node_image(self, name: str) -> str:
        """The node image (Debian + python3), pushed into the cluster registry as
        ``<VIP>:5000/<name>`` (push_image). Returns that reference."""
        return self.push_image(name, image.build())

    def push_image(self, name: str, source: str) -> str:
        """The host engine's image ``source``, pushed by the build node into the cluster registry
        as ``<VIP>:5000/<name>``, the way a release build pushes: through the build node's
        engine and the LVS director, with the push user. Returns that reference."""
        build = next(n.name for n in self.nodes if n.has_role("build"))
        registry = self.pillar(build, "registry:vip:address")
        password = self.pillar(build, "registry:users:push")
        if not registry or not password or "*" in password:
            raise RuntimeError(f"{build}'s pillar lacks registry:vip:address or the push password")
        ref = f"{registry}:5000/{name}"
        subprocess.run(
            f"docker save {source} | docker exec -i {container_name(build)} docker load -q",
            shell=True,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["docker", "exec", "-i", container_name(build), "docker", "login", "-u", "push"]
            + ["--password-stdin", f"{registry}:5000"],
            input=password.encode(),
            check=True,
            capture_output=True,
        )
        try:
            self.exec(build, ["docker", "tag", source, ref])
            self.exec(build, ["docker", "push", "-q", ref])
        finally:
            self.exec(build, ["docker", "logout", f"{registry}:5000"], check=False)
        return ref

    def up(self, highstate: bool = True) -> dict[str, HighstateResult] | None:
        step(f"inventory {self.inventory.path}: profile {self.profile}, {len(self.nodes)} nodes")
        node_image = image.build()
        engine_mod.ensure_network(self.engine, self.inventory)
        self.start_vms()
        self.vagrant_up(node_image)
        self.wait_vms()
        self.bootstrap()
        self.wait_minions()
        self.sync()
        if not highstate:
            return None
        step("highstate on every node (each node prints a summary when done)")
        results = self.highstate(report=lambda result: step(result.describe()))
        if all(r.ok for r in results.values()) and any(n.has_role("build") for n in self.nodes):
            # The base of the example app's image (pillar/release/hello.sls: base).
            step(f"pushing the node image to the cluster registry as {RELEASE_BASE}")
            self.push_node_image(RELEASE_BASE)
        return results

    def down(self) -> None:
        # Every VM this checkout started, whatever the profile or the inventory says now.
        for name in vm.recorded(STATE_DIR):
            step(f"removing VM {name}")
            vm.destroy(name, STATE_DIR)
        step("vagrant destroy")
        subprocess.run(
            ["vagrant", "destroy", "-f"],
            cwd=ROOT,
            env=self._env() | {"SALTYARD_PROFILE": "full"},
            check=False,
        )
        label = f"saltyard.cluster={self.inventory.name}"
        for container in self.engine.containers.list(all=True, filters={"label": label}):
            step(f"removing container {container.name}")
            container.remove(force=True, v=True)
        # Per-node volumes (saltyard-NODE-docker) and shared ones (saltyard-shared-...).
        for prefix in [node.name for node in self.inventory.nodes] + ["shared"]:
            for volume in self.engine.volumes.list(filters={"name": f"saltyard-{prefix}-"}):
                volume.remove(force=True)
        name = self.inventory.network["name"]
        # Docker's name filter matches substrings: never remove another network by accident.
        for net in self.engine.networks.list(names=[name]):
            if net.name == name:
                step(f"removing network {net.name}")
                net.remove()
