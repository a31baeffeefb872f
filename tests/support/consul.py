"""The one Consul launcher of the host-level suites: a real ``consul agent`` on 127.0.0.1 with
ACLs on (default deny) and a master token, either a dev agent (in memory; what the bridge and lb
suites use) or a one-server datacenter with a data directory and extra configuration (what the
consul_acl tests use, e.g. to keep a server in legacy ACL mode)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import consul
import requests

from tests.processes import stop_process
from tests.support import starts
from tests.support.components import require_program
from tests.support.wait import free_ports, tail, wait_until


class ConsulAgent:
    """``start()``/``stop()``; ``restart()`` of a dev agent loses all data, as a dev agent does,
    and puts every token made with ``create_token`` back (same secret), the way an operator's
    bootstrap would."""

    def __init__(
        self,
        workdir: Path,
        *,
        dev: bool = True,
        extra_config: str = "",
        node_name: str = "saltyard-test-consul",
    ):
        require_program("consul", "consul from Debian bullseye")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dev = dev
        self.node_name = node_name
        self.master = str(uuid.uuid4())
        self.bridge_token: str | None = None  # set by tests.support.bridge.add_bridge_token
        self.http_port, self.serf_port, self.server_port, serf_wan = free_ports(4)
        self.log_file = self.workdir / "consul.log"
        self.config = self.workdir / "consul.hcl"
        self.proc: subprocess.Popen | None = None
        self._tokens: list[tuple[str, str, str]] = []  # (secret, rules, name)
        if dev:
            mode = f'node_name = "{node_name}"'
            wan = "-1"
        else:
            mode = f'server = true\nbootstrap_expect = 1\nnode_name = "{node_name}"\n'
            mode += f'data_dir = "{self.workdir / "data"}"'
            wan = str(serf_wan)
        self.config.write_text(
            f"""\
{mode}
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
acl {{
  enabled = true
  default_policy = "deny"
  enable_token_persistence = false
  tokens {{
    master = "{self.master}"
    agent = "{self.master}"
  }}
}}
# The tests use 2 s leader sessions (Consul's default minimum is 10 s).
session_ttl_min = "1s"
disable_update_check = true
ports {{
  http = {self.http_port}
  dns = -1
  grpc = -1
  serf_lan = {self.serf_port}
  serf_wan = {wan}
  server = {self.server_port}
}}
{extra_config}
"""
        )
        self.config.chmod(0o600)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def admin(self) -> consul.Consul:
        client = consul.Consul(host="127.0.0.1", port=self.http_port, token=self.master)
        client.token = self.master  # py-consul would prefer a CONSUL_HTTP_TOKEN from the env
        return client

    def catalog(self, verb: str, body: dict) -> None:
        """PUT /v1/catalog/register or /deregister as the operator. Not py-consul's
        catalog.register: with a token it adds a ``WriteRequest`` field that Consul 1.8
        refuses ("unknown field")."""
        response = requests.put(
            f"{self.url}/v1/catalog/{verb}",
            json=body,
            headers={"X-Consul-Token": self.master},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CONSUL_HTTP_ADDR": self.url,
            "CONSUL_HTTP_TOKEN": token or self.master,
        }
        return subprocess.run(
            ["consul", *args], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    def start(self, wait: bool = True) -> ConsulAgent:
        """Start the agent; with ``wait``, return once it has a leader and its node is in the
        catalog (sessions need the node and its serfHealth check), with its tokens made."""
        with starts.timed("consul", "start"):
            cmd = ["consul", "agent", "-config-file", str(self.config)]
            if self.dev:
                cmd.insert(2, "-dev")
            with open(self.log_file, "ab") as log:
                self.proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            if wait:
                admin = self.admin()

                def ready():
                    if self.proc.poll() is not None:
                        raise AssertionError(f"consul exited: {tail(self.log_file)}")
                    try:
                        if not admin.status.leader():
                            return False
                        _, checks = admin.health.node(self.node_name)
                        return any(c["CheckID"] == "serfHealth" for c in checks or [])
                    except (requests.RequestException, consul.ConsulException):
                        return False

                wait_until(ready, 30, message="consul leader and node registration")
                for secret, rules, name in self._tokens:
                    self._make_token(secret, rules, name)
            return self

    def create_token(self, secret: str, rules: str, name: str) -> None:
        """A policy ``name`` with ``rules`` and a token with that SecretID holding it."""
        self._make_token(secret, rules, name)
        self._tokens.append((secret, rules, name))

    def _make_token(self, secret: str, rules: str, name: str) -> None:
        policy = self.workdir / f"{name}.hcl"
        policy.write_text(rules)
        created = self.cli("acl", "policy", "create", "-name", name, "-rules", f"@{policy}")
        assert created.returncode == 0, created.stderr
        made = self.cli(
            "acl", "token", "create", "-secret", secret, "-policy-name", name, "-description", name
        )
        assert made.returncode == 0, made.stderr

    def stop(self) -> None:
        with starts.timed("consul", "stop"):
            stop_process(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return tail(self.log_file, 20000)

    # ----------------------------------------------------------- catalog views for assertions

    def instances(self, app_id: str | None = None, owned_only: bool = True) -> dict[str, dict]:
        """Service id -> {service, node, address, port, tags, meta} on the bridge's marathon-*
        nodes."""
        admin = self.admin()
        _, nodes = admin.catalog.nodes()
        out = {}
        for node in nodes or []:
            if not node["Node"].startswith("marathon-"):
                continue
            found = admin.catalog.node(node["Node"])
            services = ((found or (None, {}))[1] or {}).get("Services") or {}
            for sid, svc in services.items():
                meta = svc.get("Meta") or {}
                if owned_only and meta.get("saltyard-bridge") != "owned":
                    continue
                if app_id is not None and meta.get("marathon-app") != app_id:
                    continue
                out[sid] = {
                    "service": svc["Service"],
                    "node": node["Node"],
                    "node_meta": node.get("Meta") or {},
                    "address": svc["Address"],
                    "port": svc["Port"],
                    "tags": sorted(svc.get("Tags") or []),
                    "meta": meta,
                }
        return out
