"""The bridge (``python -m saltyard.bridge``) as a subprocess with test timings, the bridge's
Consul token, and the app definition the bridge and lb suites deploy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from tests.processes import stop_process
from tests.support.consul import ConsulAgent
from tests.support.docker import TASK_IMAGE
from tests.support.wait import free_port, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO / "salt" / "consul" / "policies" / "bridge.hcl"
# The emulator's agents all run on this host; their published ports bind to loopback.
AGENT_ADDRESSES = {"agent-fat": "127.0.0.1", "agent-prod": "127.0.0.1"}

BRIDGE_TEST_ARGS = [
    "--resync-interval",
    "2",
    "--session-ttl",
    "2",
    "--lock-delay",
    "1",
    "--max-backoff",
    "1",
    "--request-timeout",
    "5",
    "--event-stream-timeout",
    "15",
    *[arg for host, ip in AGENT_ADDRESSES.items() for arg in ("--host-address", f"{host}={ip}")],
]


def add_bridge_token(consul: ConsulAgent) -> str:
    """The bridge's token, holding exactly salt/consul/policies/bridge.hcl (so the tests prove
    that policy is enough); kept over the agent's restarts."""
    consul.bridge_token = str(uuid.uuid4())
    consul.create_token(consul.bridge_token, POLICY_FILE.read_text(), "saltyard-bridge")
    return consul.bridge_token


class BridgeProcess:
    def __init__(
        self,
        name: str,
        workdir: Path,
        marathon_url: str,
        consul: ConsulAgent,
        args,
        consul_url: str | None = None,
        token: str | None = None,
    ):
        self.name = name
        self.log_file = Path(workdir) / f"bridge-{name}.log"
        self.marathon_url = marathon_url
        self.consul = consul
        self.consul_url = consul_url or consul.url  # a ConsulProxy's, to watch its writes
        self.token = token  # another token than the bridge policy's (the ACL tests)
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BridgeProcess:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "saltyard.bridge",
            "--marathon",
            self.marathon_url,
            "--consul",
            self.consul_url,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "DEBUG",
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "MARATHON_"))}
        env["CONSUL_HTTP_TOKEN"] = self.token or self.consul.bridge_token or ""
        with open(self.log_file, "a") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self.health, 15, message=f"bridge {self.name} /health")
        return self

    def health(self) -> dict | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"bridge {self.name} exited: {tail(self.log_file)}")
        try:
            return requests.get(self.url + "/health", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None

    def metrics(self) -> dict[str, float]:
        """Prometheus text -> {"name{labels}": value}."""
        text = requests.get(self.url + "/metrics", timeout=2).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def wait_active(self, timeout: float = 20) -> dict:
        return wait_until(
            lambda: (h := self.health()) and h["active"] and h["last_sync"] and h,
            timeout,
            message=f"bridge {self.name} active and synced",
        )

    def kill(self) -> None:
        """SIGKILL: no lock release, no cleanup, what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process freezes (a long GC pause, a VM stall), holding what it held."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        self.resume()  # a stopped process would not act on SIGTERM
        return stop_process(self.proc)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def web_app(app_id: str, instances: int = 1, *, env: str = "fat", **extra) -> dict:
    """A Docker (BRIDGE) app serving HTTP on a dynamic host port, health-checked every second,
    pinned to the agent whose ``env`` attribute is ``env``."""
    body = {
        "id": app_id,
        "cmd": "exec python3 -m http.server $PORT0",
        "instances": instances,
        "cpus": 0.1,
        "mem": 64,
        "container": {
            "type": "DOCKER",
            "docker": {"image": TASK_IMAGE, "network": "BRIDGE"},
            "portMappings": [{"containerPort": 0, "hostPort": 0}],
        },
        "constraints": [["env", "CLUSTER", env]],
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": "/",
                "portIndex": 0,
                "intervalSeconds": 1,
                "timeoutSeconds": 3,  # slack for a loaded 2-core machine
                "gracePeriodSeconds": 20,
                "maxConsecutiveFailures": 3,
            }
        ],
        "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
    }
    body.update(extra)
    return body


def healthy_tasks(marathon, app_id: str) -> dict[str, dict]:
    """Task id -> task for the app's RUNNING tasks with every health check alive."""
    out = {}
    for task in marathon.list_tasks(app_id):
        results = task.get("healthCheckResults") or []
        if task["state"] == "TASK_RUNNING" and results and all(r["alive"] for r in results):
            out[task["id"]] = task
    return out
