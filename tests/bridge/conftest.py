"""Fixtures for the bridge's tests, all against real services started here on 127.0.0.1 (the
parts live in tests/support, shared with the lb suite and the benchmarks):

- a Consul 1.8 dev agent with ACLs on (default deny): the bridge's token carries exactly the
  policy in salt/consul/policies/bridge.hcl, so the tests prove that policy is enough;
- the Marathon-API emulator with two agents on the host's Docker engine (tasks are real
  containers; published ports bind to 127.0.0.1);
- bridge daemons as subprocesses (``python -m saltyard.bridge``).

Everything started is stopped, and every container removed (by label), even on failure. Test
modules get the helper functions through the ``h`` fixture (a conftest is not importable by name
when several directories have one).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import requests

from tests.support.bridge import (
    AGENT_ADDRESSES,
    BRIDGE_TEST_ARGS,
    BridgeProcess,
    add_bridge_token,
    healthy_tasks,
    web_app,
)
from tests.support.consul import ConsulAgent
from tests.support.emulator import EmulatorProcess, running_emulator
from tests.support.wait import tail, wait_until

# The emulator's agents publish task ports from here (tests/marathon and tests/lb use others).
FIRST_PORT = 45000


@pytest.fixture(scope="session")
def consul_agent(tmp_path_factory) -> Iterator[ConsulAgent]:
    agent = ConsulAgent(tmp_path_factory.mktemp("consul"), node_name="bridge-test-consul")
    try:
        agent.start()
        add_bridge_token(agent)
        yield agent
    finally:
        agent.stop()


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


# ---------------------------------------------------------------------- Marathon emulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory, docker_client, task_image) -> Iterator[EmulatorProcess]:
    with running_emulator(
        docker_client, tmp_path_factory.mktemp("emulator"), FIRST_PORT, "bridge"
    ) as emu:
        yield emu


@pytest.fixture(scope="session")
def marathon(emulator):
    from saltyard.clients.marathon import MarathonClient

    return MarathonClient(emulator.url, timeout=(3.05, 20.0))


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


# ---------------------------------------------------------------------- bridge daemons


@pytest.fixture
def make_bridge(tmp_path, emulator, consul_agent) -> Iterator[Callable[..., BridgeProcess]]:
    """Factory for bridge subprocesses with test timings (2 s resync and session TTL, 1 s
    lock-delay). ``lock_key`` separates tests; ``token``: a Consul token other than the bridge
    policy's. Every bridge is stopped at the end, and its log printed (pytest shows it for
    failing tests)."""
    started: list[BridgeProcess] = []

    def make(
        name: str = "a",
        lock_key: str = "saltyard/bridge/test",
        *extra: str,
        consul_url: str | None = None,
        token: str | None = None,
    ):
        bridge = BridgeProcess(
            name,
            tmp_path,
            emulator.url,
            consul_agent,
            [*BRIDGE_TEST_ARGS, "--lock-key", lock_key, *extra],
            consul_url=consul_url,
            token=token,
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
