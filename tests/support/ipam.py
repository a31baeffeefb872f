"""The IPAM plugin (``python -m saltyard.ipam``) as a subprocess with test timings, its Consul
token, and a Linux bridge to be a macvlan parent: what tests/ipam (and later the benchmarks)
share."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from saltyard.ipam.unix_http import call_plugin, plugin_status
from tests.processes import stop_process
from tests.support.components import require_program, require_root
from tests.support.consul import ConsulAgent
from tests.support.wait import tail, wait_until

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO / "salt" / "consul" / "policies" / "ipam.hcl"
PLUGIN_DIR = Path("/run/docker/plugins")


def add_ipam_token(consul: ConsulAgent) -> str:
    """A token holding exactly salt/consul/policies/ipam.hcl (so the tests prove that policy
    is enough); kept over the agent's restarts."""
    token = str(uuid.uuid4())
    consul.create_token(token, POLICY_FILE.read_text(), "saltyard-ipam")
    return token


class IpamProcess:
    """One plugin daemon. ``config`` is the configuration file's content without ``consul``
    (filled in from ``consul``, with the token in a file) unless it names one."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        consul: ConsulAgent | None,
        token: str | None,
        config: dict[str, Any],
    ):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.workdir / f"ipam-{name}.log"
        self.config_file = self.workdir / f"ipam-{name}.json"
        config = dict(config)
        if "consul" not in config and consul is not None:
            config["consul"] = {"address": consul.url, "timeout": 5}
            if token:
                token_file = self.workdir / f"ipam-{name}.token"
                token_file.write_text(token + "\n")
                token_file.chmod(0o600)
                config["consul"]["token_file"] = str(token_file)
        self.config = config
        plugin = config.get("plugin") or {}
        self.socket = Path(
            plugin.get("socket") or PLUGIN_DIR / f"{plugin.get('name', 'saltyard-ipam')}.sock"
        )
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> IpamProcess:
        self.config_file.write_text(json.dumps(self.config, indent=1))
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "saltyard.ipam", "--config", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
            )
        if wait:

            def answers():
                if self.proc.poll() is not None:
                    raise AssertionError(f"ipam {self.name} exited: {tail(self.log_file)}")
                return call_plugin(self.socket, "Plugin.Activate", timeout=2)[0] == 200

            wait_until(answers, 20, ignore=(OSError,), message=f"ipam {self.name} socket")
        return self

    def call(self, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        return call_plugin(self.socket, method, body, timeout=30)

    def request(self, pool: str, address: str = "", mac: str | None = None, **options):
        """RequestAddress as Docker sends it: (status, answer)."""
        opts = dict(options)
        if mac:
            opts["com.docker.network.endpoint.macaddress"] = mac
        return self.call(
            "IpamDriver.RequestAddress", {"PoolID": pool, "Address": address, "Options": opts}
        )

    def release(self, pool: str, address: str):
        return self.call("IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": address})

    def status(self) -> dict[str, Any]:
        return plugin_status(self.socket)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        return stop_process(self.proc, grace=15, sig=sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown, the socket file stays behind (as after a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return tail(self.log_file, 8000)


class LinuxBridge:
    """A Linux bridge interface with no ports, made by the test to be a macvlan parent (never
    the machine's own interface); removed by ``remove``."""

    def __init__(self, name: str):
        require_root("creates a Linux bridge interface")
        self.ip = require_program("ip", "iproute2")
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 characters")
        self.name = name

    def create(self) -> LinuxBridge:
        for args in (
            ["link", "add", self.name, "type", "bridge"],
            ["link", "set", self.name, "up"],
        ):
            subprocess.run([self.ip, *args], check=True, capture_output=True, timeout=10)
        return self

    def exists(self) -> bool:
        return (
            subprocess.run(
                [self.ip, "link", "show", self.name], capture_output=True, timeout=10
            ).returncode
            == 0
        )

    def remove(self) -> None:
        if self.exists():
            subprocess.run(
                [self.ip, "link", "del", self.name], check=True, capture_output=True, timeout=10
            )
