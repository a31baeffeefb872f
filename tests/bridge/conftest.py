"""Fixtures for the bridge's tests, all against real services started here on 127.0.0.1:

- a Consul 1.8 dev agent with ACLs on (default deny): the bridge's token carries exactly the
  policy in salt/consul/policies/bridge.hcl, so the tests prove that policy is enough;
- the Marathon-API emulator with two agents on the host's Docker engine (tasks are real
  containers; published ports bind to 127.0.0.1);
- bridge daemons as subprocesses (``python -m saltyard.bridge``).

Everything started is stopped, and every container removed (by label), even on failure. The
emulator fixture follows tests/marathon/conftest.py; it is repeated here because that
conftest's helpers import as a top-level module only when its own directory is collected.
Test modules get the helper functions through the ``h`` fixture (a conftest is not importable
by name when several directories have one).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests.processes import stop_process

consul = pytest.importorskip("consul")
docker = pytest.importorskip("docker")

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO / "salt" / "consul" / "policies" / "bridge.hcl"
SESSION = f"pytest-bridge-{uuid.uuid4().hex[:8]}"
EMULATOR_LABEL = "saltyard.marathon-emulator"
TASK_IMAGE = "saltyard-bridge-test/task:1"
AGENT_ADDRESSES = {"agent-fat": "127.0.0.1", "agent-prod": "127.0.0.1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# ---------------------------------------------------------------------- Consul


class ConsulAgent:
    """``consul agent -dev`` with ACLs; restart() loses all data, as a dev agent does, and puts
    the bridge's policy and token back (same secret) the way an operator's bootstrap would."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.master = str(uuid.uuid4())
        self.bridge_token = str(uuid.uuid4())
        self.http_port = free_port()
        self.serf_port = free_port()
        self.server_port = free_port()
        self.log_file = workdir / "consul.log"
        self.config = workdir / "consul.hcl"
        self.proc: subprocess.Popen | None = None
        self.config.write_text(
            textwrap.dedent(
                f"""\
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
                  serf_wan = -1
                  server = {self.server_port}
                }}
                """
            )
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

    def start(self) -> ConsulAgent:
        log = open(self.log_file, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                "consul",
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
                "-node",
                "bridge-test-consul",
                "-config-file",
                str(self.config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        admin = self.admin()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"consul exited: {tail(self.log_file)}")
            try:
                if not admin.status.leader():
                    return False
                # Sessions need the agent's node and its serfHealth check in the catalog.
                _, checks = admin.health.node("bridge-test-consul")
                return any(c["CheckID"] == "serfHealth" for c in checks or [])
            except (requests.RequestException, consul.ConsulException):
                return False

        wait_until(ready, 30, message="consul leader and node registration")
        self.create_token(self.bridge_token, POLICY_FILE.read_text(), "saltyard-bridge")
        return self

    def create_token(self, secret: str, rules: str, name: str) -> None:
        policy = self.workdir / f"{name}.hcl"
        policy.write_text(rules)
        created = self.cli("acl", "policy", "create", "-name", name, "-rules", f"@{policy}")
        assert created.returncode == 0, created.stderr
        made = self.cli(
            "acl", "token", "create", "-secret", secret, "-policy-name", name, "-description", name
        )
        assert made.returncode == 0, made.stderr

    def stop(self) -> None:
        stop_process(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    # ----------------------------------------------------------- catalog views for assertions

    def instances(self, app_id: str | None = None, owned_only: bool = True) -> dict[str, dict]:
        """Service id -> {service, node, address, port, tags, meta} on the marathon-* nodes."""
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


class ConsulProxy:
    """A pass-through HTTP proxy in front of the real Consul agent, on loopback, for one
    bridge's ``--consul``. It changes nothing; it lets a test see every ``/v1/txn`` the bridge
    sends at the moment it commits, which no observer outside the bridge can do reliably
    (chunks of one write commit milliseconds apart):

    - ``after_txn(ops, status)`` runs once Consul answered a transaction and before the bridge
      gets the answer, so the bridge cannot send its next chunk while the test looks;
    - ``hold()`` parks the transactions that arrive from then on until ``release()`` (a write
      in flight while its sender stalls), and ``held`` counts the parked ones.

    ``txns`` records (monotonic time, ops, status) of every forwarded transaction."""

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.txns: list[tuple[float, list, int]] = []
        self.after_txn: Callable[[list, int], None] | None = None
        self.held = 0
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the bridge's own log says what it did
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                txn = self.path.split("?")[0] == "/v1/txn"
                if txn and not proxy._gate.is_set():
                    with proxy._lock:
                        proxy.held += 1
                    proxy._gate.wait(120)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("x-consul-token",)
                }
                try:
                    answer = requests.request(
                        self.command,
                        proxy.target + self.path,
                        data=body,
                        headers=headers,
                        timeout=(3, 330),  # blocking queries wait up to 5 min
                    )
                except requests.RequestException:
                    self.send_error(502)
                    return
                if txn:
                    ops = json.loads(body or b"[]")
                    with proxy._lock:
                        proxy.txns.append((time.monotonic(), ops, answer.status_code))
                    if proxy.after_txn:
                        proxy.after_txn(ops, answer.status_code)
                self.send_response(answer.status_code)
                for key in ("Content-Type", "X-Consul-Index", "X-Consul-Knownleader"):
                    if key in answer.headers:
                        self.send_header(key, answer.headers[key])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def consul_proxy(consul_agent) -> Iterator[ConsulProxy]:
    proxy = ConsulProxy(consul_agent.url)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def consul_agent(tmp_path_factory) -> Iterator[ConsulAgent]:
    try:
        subprocess.run(["consul", "version"], capture_output=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no consul binary ({exc}): run scripts/host-setup.sh")
    agent = ConsulAgent(tmp_path_factory.mktemp("consul"))
    try:
        agent.start()
        yield agent
    finally:
        agent.stop()


# ---------------------------------------------------------------------- Marathon emulator


class EmulatorProcess:
    def __init__(self, cluster: str, workdir: Path):
        self.cluster = cluster
        self.state_file = workdir / "emulator-state.json"
        self.log_file = workdir / "emulator.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorProcess:
        sock = "unix:///var/run/docker.sock"
        cmd = [
            sys.executable,
            "-m",
            "saltyard.marathon_emulator",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--state-file",
            str(self.state_file),
            "--cluster-name",
            self.cluster,
            "--kill-grace",
            "2",
            "--agent",
            f"agent-fat={sock}:env=fat,@ports=45000-45199,@bind=127.0.0.1",
            "--agent",
            f"agent-prod={sock}:env=prod,@ports=45200-45399,@bind=127.0.0.1",
        ]
        log = open(self.log_file, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"emulator exited: {tail(self.log_file)}")
            try:
                return requests.get(self.url + "/ping", timeout=1).text == "pong"
            except requests.RequestException:
                return False

        wait_until(up, 20, message="emulator /ping")
        return self

    def stop(self) -> None:
        stop_process(self.proc, grace=10)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no engine: skip rather than fail obscurely
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    for c in client.containers.list(
        all=True, sparse=True, filters={"label": f"{EMULATOR_LABEL}.cluster"}
    ):
        if (c.attrs.get("Labels") or {}).get(f"{EMULATOR_LABEL}.cluster", "").startswith(SESSION):
            c.remove(force=True)


@pytest.fixture(scope="session")
def task_image(docker_client):
    """A tag of the node image (Debian 12 + python3) for the tasks, removed again at the end."""
    from saltyard.localcluster import image

    created = False
    try:
        docker_client.images.get(TASK_IMAGE)
    except docker.errors.ImageNotFound:
        docker_client.images.get(image.build()).tag(TASK_IMAGE)
        created = True
    yield TASK_IMAGE
    if created:
        docker_client.images.remove(TASK_IMAGE, noprune=True)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory, docker_client, task_image) -> Iterator[EmulatorProcess]:
    cluster = f"{SESSION}-{uuid.uuid4().hex[:4]}"
    emu = EmulatorProcess(cluster, tmp_path_factory.mktemp("emulator"))
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{EMULATOR_LABEL}.cluster={cluster}"}
        ):
            c.remove(force=True)


@pytest.fixture(scope="session")
def marathon(emulator):
    from saltyard.clients.marathon import MarathonClient

    return MarathonClient(emulator.url, timeout=(3.05, 20.0))


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


@pytest.fixture
def apps(marathon) -> Iterator[Callable[..., dict]]:
    """Create apps (PUT); every app created is deleted (force) when the test ends."""
    created: list[str] = []

    def create(app: dict) -> dict:
        created.append(app["id"])
        marathon.update_app(app["id"], app, force=True)
        return app

    yield create
    for app_id in created:
        try:
            marathon.delete_app(app_id, force=True)
        except Exception:  # already gone, or the emulator is down: its teardown cleans up
            pass


def healthy_tasks(marathon, app_id: str) -> dict[str, dict]:
    """Task id -> task for the app's RUNNING tasks with every health check alive."""
    out = {}
    for task in marathon.list_tasks(app_id):
        results = task.get("healthCheckResults") or []
        if task["state"] == "TASK_RUNNING" and results and all(r["alive"] for r in results):
            out[task["id"]] = task
    return out


# ---------------------------------------------------------------------- bridge daemons


class BridgeProcess:
    def __init__(
        self,
        name: str,
        workdir: Path,
        marathon_url: str,
        consul: ConsulAgent,
        args,
        consul_url: str | None = None,
    ):
        self.name = name
        self.log_file = workdir / f"bridge-{name}.log"
        self.marathon_url = marathon_url
        self.consul = consul
        self.consul_url = consul_url or consul.url  # a ConsulProxy's, to watch its writes
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
        env["CONSUL_HTTP_TOKEN"] = self.consul.bridge_token
        log = open(self.log_file, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
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


@pytest.fixture
def make_bridge(tmp_path, emulator, consul_agent) -> Iterator[Callable[..., BridgeProcess]]:
    """Factory for bridge subprocesses with test timings (2 s resync and session TTL, 1 s
    lock-delay). ``lock_key`` separates tests; every bridge is stopped at the end, and its log
    printed (pytest shows it for failing tests)."""
    started: list[BridgeProcess] = []

    def make(
        name: str = "a",
        lock_key: str = "saltyard/bridge/test",
        *extra: str,
        consul_url: str | None = None,
    ):
        bridge = BridgeProcess(
            name,
            tmp_path,
            emulator.url,
            consul_agent,
            [*BRIDGE_TEST_ARGS, "--lock-key", lock_key, *extra],
            consul_url=consul_url,
        )
        started.append(bridge)
        return bridge

    yield make
    for bridge in started:
        bridge.stop()
        print(f"----- bridge {bridge.name} log (tail)\n{tail(bridge.log_file, 6000)}")


def owned_view(consul_agent: ConsulAgent, app_id: str) -> dict[str, tuple]:
    """Service id -> (service, address, port) for one app, for comparisons."""
    return {
        sid: (i["service"], i["address"], i["port"])
        for sid, i in consul_agent.instances(app_id).items()
    }


def expected_view(marathon, app_id: str, service: str) -> dict[str, tuple]:
    return {
        tid: (service, AGENT_ADDRESSES[t["host"]], t["ports"][0])
        for tid, t in healthy_tasks(marathon, app_id).items()
    }


def dump(value) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The helper functions above, for the test modules."""
    return SimpleNamespace(
        wait_until=wait_until,
        web_app=web_app,
        healthy_tasks=healthy_tasks,
        owned_view=owned_view,
        expected_view=expected_view,
        dump=dump,
        tail=tail,
        agent_addresses=AGENT_ADDRESSES,
    )
