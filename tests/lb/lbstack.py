"""The lb role's host-level stack, for tests/lb and benchmarks/lb_*.py: real parts on loopback.

Marathon-API emulator (tasks are containers on the host's Docker engine) -> the bridge ->
Consul 1.8 (ACLs, default deny) -> the real consul-template (built by
scripts/build-consul-template.sh) -> a real nginx started here with its own prefix on a loopback
high port. consul-template and nginx run the files that the Salt state ``states/lb`` ships:
the template, the consul-template configuration and nginx's http-level configuration (both
rendered from their Jinja sources with the same ``lb`` parameters the state passes, from
``states/lb/defaults.yaml``), and the apply script. Only nginx's top-level ``nginx.conf`` is
the test's own, where Debian's package would ship one.

Consul, the emulator, the bridge and the task image are tests/support's, as the bridge suite
uses them; the emulator's cluster name starts with the session's prefix, so everything it
started is removed by it.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import jinja2
import requests
import yaml

from saltyard.release import traffic
from tests.processes import stop_process
from tests.support import bridge as helpers
from tests.support import docker as support_docker
from tests.support import versions
from tests.support.consul import ConsulAgent
from tests.support.emulator import EmulatorProcess, agent_specs, new_cluster_name
from tests.support.wait import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
LB_FILES = REPO / "states" / "lb" / "files"
LB_DEFAULTS = REPO / "states" / "lb" / "defaults.yaml"
LB_POLICY = REPO / "salt" / "consul" / "policies" / "lb.hcl"
# The pinned build (states/lb/defaults.yaml), made by scripts/build-consul-template.sh.
CONSUL_TEMPLATE_VERSION = versions.consul_template_version()
CONSUL_TEMPLATE = versions.consul_template_binary()
DOMAIN = "saltyard.test"
# The emulator's agents publish task ports from here (tests/bridge and tests/marathon use others).
FIRST_PORT = 46000
GRACEFUL_SERVER = Path(__file__).with_name("graceful_server.py")


def backend_app(
    app_id: str,
    instances: int = 1,
    *,
    env: str = "fat",
    graceful: bool = False,
    task_env: dict[str, str] | None = None,
    **extra,
) -> dict:
    """A web app whose every task answers ``GET /id`` with its Marathon task id.

    ``graceful=False``: ``python -m http.server``, which dies at once on SIGTERM.
    ``graceful=True``: tests/lb/graceful_server.py, which keeps serving 2 s after SIGTERM and
    then exits (what docs/lb.md asks of applications), with a kill grace period above that;
    ``task_env`` sets its variables (DRAIN_SECONDS, RESPONSE_SECONDS)."""
    app = helpers.web_app(app_id, instances, env=env, **extra)
    if graceful:
        app["env"] = {
            **app.get("env", {}),
            **(task_env or {}),
            "SALTYARD_TEST_SERVER": GRACEFUL_SERVER.read_text(),
        }
        app["cmd"] = 'exec python3 -c "$SALTYARD_TEST_SERVER"'
        app.setdefault("taskKillGracePeriodSeconds", 5)
    else:
        app["cmd"] = (
            'mkdir -p /tmp/www && printf %s "$MESOS_TASK_ID" > /tmp/www/id && cd /tmp/www && '
            "exec python3 -m http.server $PORT0"
        )
    return app


def wait_served(stack, host: str, count: int, timeout: float = 60, settle: float = 1.0) -> set[str]:
    """Wait until ``count`` healthy tasks are in the upstream, each has answered through nginx,
    and every answer for the last ``settle`` seconds was a 200.

    The settle time is for nginx's reload: the master starts workers with the new
    configuration before it tells the old ones to stop accepting, so for a moment a new
    connection may still reach a worker that does not know the host yet (404). One 200 does
    not show the reload is over (a load test that started at that moment got five 404s)."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    good_since = None
    while time.monotonic() < deadline:
        try:
            response = stack.nginx.get(host, "/id", timeout=2)
        except requests.RequestException:
            response = None
        now = time.monotonic()
        if response is not None and response.status_code == 200:
            seen.add(response.text)
            good_since = good_since or now
        else:
            good_since = None
        if (
            len(seen) >= count
            and good_since is not None
            and now - good_since >= settle
            and len(stack.nginx.upstream_servers(host.split(".")[0])) == count
        ):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{host}: {count} instances not served within {timeout} s ({seen})")


def lb_params(prefix: Path, consul_address: str, listen: str, **overrides) -> dict:
    """The ``lb`` parameters the Salt state would pass to its templates: defaults.yaml with
    this stack's paths (as pillar would override them)."""
    lb = copy.deepcopy(yaml.safe_load(LB_DEFAULTS.read_text())["lb"])
    lb["domain"] = DOMAIN
    lb["listen"] = listen
    lb["consul_template"]["consul_address"] = consul_address
    lb["paths"].update(
        config_dir=str(prefix / "consul-template"),
        live=str(prefix / "nginx" / "apps.conf"),
        staged=str(prefix / "staged" / "apps.conf.rendered"),
        apply_script=str(LB_FILES / "saltyard-lb-apply.sh"),
        release_log=str(prefix / "nginx" / "release.log"),
    )
    # What states/lb/map.jinja adds from the release_traffic module.
    lb["release_log_format"] = traffic.LOG_FORMAT
    nginx_conf = prefix / "nginx" / "nginx.conf"
    lb["nginx_args"] = ["-p", str(prefix / "nginx"), "-c", str(nginx_conf), "-e", "stderr"]
    for key, value in overrides.items():
        lb[key] = value
    return lb


def render(template: str, lb: dict) -> str:
    """Render a shipped Jinja file the way the state's ``template: jinja`` does (context lb)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((LB_FILES / template).read_text()).render(lb=lb)


class SyslogCatcher:
    """A syslog datagram socket for the apply script's ``logger -u``; collects its lines."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines.append(data.decode(errors="replace"))

    def matching(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# /proc/<pid>/stat gives a process's start in clock ticks since boot.
_TICKS = os.sysconf("SC_CLK_TCK")


class Nginx:
    """A real nginx with its own prefix, listening on 127.0.0.1:<port> only."""

    def __init__(self, prefix: Path, lb: dict):
        self.prefix = prefix
        self.lb = lb
        self.port = int(lb["listen"].rpartition(":")[2])
        self.conf = prefix / "nginx.conf"
        self.log_file = prefix / "nginx.stderr"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return list(self.lb["nginx_args"])

    def start(self) -> Nginx:
        p = self.prefix
        for sub in ("temp", "logs"):
            (p / sub).mkdir(parents=True, exist_ok=True)
        # The shipped http-level file (rendered as the state renders it) and an empty set of
        # virtual hosts, as the state lays them down before consul-template's first render.
        (p / "saltyard-lb.conf").write_text(render("saltyard-lb.conf.jinja", self.lb))
        live = Path(self.lb["paths"]["live"])
        live.write_text("# Filled by consul-template (saltyard lb) from the Consul catalog.\n")
        # What Debian's /etc/nginx/nginx.conf would be: the main and events contexts, and an
        # http block that includes the role's file. Debian compiles absolute temp paths in, so
        # they are set here under the prefix.
        temp = p / "temp"
        self.conf.write_text(
            f"""\
worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/logs/error.log info;
# Debian ships 768 per worker; a load test at 200 requests/s with keep-alive clients needs
# more (vegeta opens a connection per waiting request), and nginx closes client connections
# when it runs out ("worker_connections are not enough, reusing connections").
events {{ worker_connections 4096; }}
http {{
    # Which instance answered and how long it took: what explains a slow or failed request.
    log_format upstream '$time_iso8601 $status $request_time "$host" '
                        'upstream=$upstream_addr status=$upstream_status '
                        'connect=$upstream_connect_time time=$upstream_response_time';
    access_log {p}/logs/access.log upstream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {p}/saltyard-lb.conf;
}}
"""
        )
        check = subprocess.run(
            ["nginx", *self.args(), "-t"], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stderr
        log = open(self.log_file, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["nginx", *self.args()], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.log_file.read_text()}")
            return requests.get(self.url, timeout=1) is not None

        wait_until(answers, 15, 0.1, "nginx to answer", ignore=(requests.RequestException,))
        return self

    def get(self, host: str, path: str = "/", timeout: float = 5) -> requests.Response:
        """One request with the given Host, on a fresh connection."""
        return requests.get(
            self.url + path, headers={"Host": host, "Connection": "close"}, timeout=timeout
        )

    def settled(self) -> bool:
        """nginx serves the live file: the master has one worker, started after the live file
        last changed, and no old worker still finishing. One worker alone is not enough: while
        the apply script runs ``nginx -t`` and until the master takes the reload signal, the
        old worker is the only one and serves the previous file (stop 27's CI read a share
        there that nginx had not taken yet)."""
        if not self.proc or self.proc.poll() is not None:
            return False
        workers = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.proc.pid:
                # Field 22 of /proc/<pid>/stat (index 19 after the name): start time in ticks
                # since boot.
                workers.append(int(fields[19]))
        if len(workers) != 1:
            return False
        # The live file's change on the same clock (seconds since boot); a tick of slack for
        # the start time's resolution.
        changed = Path(self.lb["paths"]["live"]).stat().st_mtime
        changed_since_boot = changed - time.time() + time.clock_gettime(time.CLOCK_BOOTTIME)
        return workers[0] / _TICKS >= changed_since_boot - 1 / _TICKS

    def upstream_servers(self, app: str, env: str = "fat", group: str = "stable") -> list[str]:
        """The ``server`` lines of one group's upstream (stable or canary) of an app in the live
        (applied) file."""
        return upstream_servers(Path(self.lb["paths"]["live"]).read_text(), f"{app}.{env}.{group}")

    def live(self) -> str:
        return Path(self.lb["paths"]["live"]).read_text()

    def release_log(self) -> Path:
        return Path(self.lb["paths"]["release_log"])

    def stop(self) -> None:
        # SIGTERM is nginx's fast shutdown of master and workers.
        stop_process(self.proc)


def upstream_servers(text: str, upstream: str) -> list[str]:
    servers, inside = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == f"upstream {upstream} {{":
            inside = True
        elif inside and stripped == "}":
            break
        elif inside and stripped.startswith("server "):
            servers.append(stripped.split()[1].rstrip(";"))
    return servers


class ConsulTemplate:
    """The real consul-template with the shipped configuration and template."""

    def __init__(self, prefix: Path, lb: dict, token: str, syslog_socket: Path):
        self.lb = lb
        self.token = token
        self.syslog_socket = syslog_socket
        self.config_dir = Path(lb["paths"]["config_dir"])
        self.log_file = prefix / "consul-template.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ConsulTemplate:
        if not CONSUL_TEMPLATE.exists():
            raise FileNotFoundError(
                f"{CONSUL_TEMPLATE} is missing: run scripts/build-consul-template.sh"
            )
        self.config_dir.mkdir(parents=True, exist_ok=True)
        token = self.config_dir / "lb.token"
        token.write_text(self.token + "\n")
        token.chmod(0o640)
        (self.config_dir / "nginx-apps.conf.ctmpl").write_bytes(
            (LB_FILES / "nginx-apps.conf.ctmpl").read_bytes()
        )
        (self.config_dir / "lb.hcl").write_text(render("consul-template.hcl.jinja", self.lb))
        # What the systemd unit sets (states/lb/init.sls), plus where the apply script logs.
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "SALTYARD_LB_DOMAIN": self.lb["domain"],
            "SALTYARD_LB_LISTEN": self.lb["listen"],
            "SALTYARD_LB_SYSLOG_SOCKET": str(self.syslog_socket),
        }
        log = open(self.log_file, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(CONSUL_TEMPLATE), "-config", str(self.config_dir / "lb.hcl")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        # SIGINT, as the lb role's unit sends (KillSignal): consul-template passes SIGTERM on
        # to its commands and keeps running.
        stop_process(self.proc, sig=signal.SIGINT)


class LbStack:
    """Everything above, started in order and stopped in reverse (containers removed by their
    cluster label). Use as a context manager."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.helpers = helpers  # tests.support.bridge: web_app, healthy_tasks, ...
        self.lb_token = str(uuid.uuid4())
        self._stops: list = []

    def __enter__(self) -> LbStack:
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        w = self.workdir
        self.docker = support_docker.client()
        # The node image, tagged for the tasks (as tests/bridge does); untagged at the end.
        if support_docker.tag_task_image(self.docker):
            self._stops.append(lambda: support_docker.remove_task_image(self.docker))

        self.consul = ConsulAgent(w / "consul", node_name="lb-test-consul")
        self._stops.append(self.consul.stop)
        self.consul.start()
        helpers.add_bridge_token(self.consul)
        self.consul.create_token(self.lb_token, LB_POLICY.read_text(), "saltyard-lb")

        (w / "emulator").mkdir(exist_ok=True)
        self.cluster = new_cluster_name("lb")
        self.emulator = EmulatorProcess(
            self.cluster,
            w / "emulator" / "state.json",
            w / "emulator" / "emulator.log",
            agent_specs(FIRST_PORT),
        )
        self._stops.append(self._remove_containers)
        self._stops.append(self.emulator.stop)
        self.emulator.start()
        from saltyard.clients.marathon import MarathonClient

        self.marathon = MarathonClient(self.emulator.url, timeout=(3.05, 20.0))

        self.bridge = helpers.BridgeProcess(
            "lb",
            w,
            self.emulator.url,
            self.consul,
            [*helpers.BRIDGE_TEST_ARGS, "--lock-key", "saltyard/bridge/lbtest"],
        )
        self._stops.append(self.bridge.stop)
        self.bridge.start()
        self.bridge.wait_active()

        prefix = w / "lb"
        (prefix / "nginx").mkdir(parents=True, exist_ok=True)
        self.lb = lb_params(
            prefix, f"127.0.0.1:{self.consul.http_port}", f"127.0.0.1:{free_port()}"
        )
        self.syslog = SyslogCatcher(prefix / "syslog.sock")
        self._stops.append(self.syslog.close)
        self.nginx = Nginx(prefix / "nginx", self.lb)
        self._stops.append(self.nginx.stop)
        self.nginx.start()
        self.consul_template = ConsulTemplate(prefix, self.lb, self.lb_token, self.syslog.path)
        self._stops.append(self.consul_template.stop)
        self.consul_template.start()

    def _remove_containers(self) -> None:
        support_docker.remove_cluster(self.docker, self.cluster)

    def __exit__(self, *exc) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as err:  # keep stopping the rest
                print(f"lbstack: stopping {stop}: {err}", file=sys.stderr)

    def host(self, app: str, env: str = "fat") -> str:
        return f"{app}.{env}.{DOMAIN}"

    def logs(self) -> str:
        parts = [
            ("consul-template", self.consul_template.log()),
            ("bridge", self.bridge.log()),
            ("nginx error.log", (self.nginx.prefix / "logs" / "error.log").read_text()),
            ("syslog", "\n".join(self.syslog.lines)),
        ]
        return "\n".join(f"----- {name}\n{text[-4000:]}" for name, text in parts)


def scale_plainly(marathon, app_id: str, instances: int, timeout: float = 120) -> float:
    """Scale with a plain PUT (no force), as an operator would: while the previous deployment
    still holds the app (409), wait and try again. Returns when the PUT was accepted
    (monotonic time)."""
    from saltyard.clients.marathon import MarathonConflict

    deadline = time.monotonic() + timeout
    while True:
        try:
            marathon.scale_app(app_id, instances)
            return time.monotonic()
        except MarathonConflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def scale_through(
    marathon, app_id: str, sequence: list[int], interval: float, stop: threading.Event
) -> list[tuple[float, int]]:
    """Scale the app through ``sequence``, one change every ``interval`` seconds (plain PUTs),
    until the sequence ends or ``stop`` is set. Returns (accepted at, instances) per change."""
    changes = []
    for instances in sequence:
        if stop.wait(interval):
            break
        changes.append((scale_plainly(marathon, app_id, instances), instances))
    return changes


def nginx_problems(error_log: str) -> dict[str, int]:
    """nginx's [error]/[warn] lines by kind (the text before ``while``, addresses dropped)."""
    import re

    kinds: dict[str, int] = {}
    for line in error_log.splitlines():
        if "[error]" not in line and "[warn]" not in line:
            continue
        text = line.split("*", 1)[-1].split(" ", 1)[-1]
        text = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", text.split(", client:")[0])
        kinds[text] = kinds.get(text, 0) + 1
    return kinds


class TaskEvents:
    """Follows the emulator's event stream in the background and keeps, for one app, the
    events that explain a failed request: status updates, failed and changed health checks."""

    TYPES = ("status_update_event", "failed_health_check_event", "health_status_changed_event")

    def __init__(self, marathon, app_id: str):
        self.app_id = app_id
        self.events: list[tuple[float, str, dict]] = []
        self.opened = threading.Event()
        self._marathon = marathon
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self.opened.wait(10)

    def _loop(self) -> None:
        try:
            for event in self._marathon.events(
                self.TYPES, read_timeout=600, on_open=self.opened.set
            ):
                if event.data.get("appId") == self.app_id:
                    self.events.append((time.monotonic(), event.type, event.data))
        except Exception:  # the stack stopped; nothing left to record
            return

    def count(self, event_type: str, **match) -> int:
        return sum(
            1
            for _, kind, data in list(self.events)
            if kind == event_type and all(data.get(k) == v for k, v in match.items())
        )

    def kill_durations(self) -> dict[str, float]:
        """Task id -> seconds from its TASK_KILLING to its TASK_KILLED event."""
        killing, durations = {}, {}
        for at, kind, data in list(self.events):
            if kind != "status_update_event":
                continue
            if data.get("taskStatus") == "TASK_KILLING":
                killing.setdefault(data.get("taskId"), at)
            elif data.get("taskStatus") == "TASK_KILLED" and data.get("taskId") in killing:
                durations[data["taskId"]] = at - killing[data["taskId"]]
        return durations

    def summary(self) -> str:
        return (
            f"{self.count('status_update_event', taskStatus='TASK_RUNNING')} started, "
            f"{self.count('status_update_event', taskStatus='TASK_KILLING')} killing, "
            f"{self.count('status_update_event', taskStatus='TASK_KILLED')} killed, "
            f"{self.count('failed_health_check_event')} failed health checks, "
            f"{self.count('health_status_changed_event', alive=False)} turned unhealthy"
        )
