"""Shared by tests/convergence/test_logging.py and benchmarks/logging.py: the emitting task
(numbered lines on stdout at a constant rate, on request), where its lines land on the log node,
and how to count them."""

from __future__ import annotations

import collections
import json

import requests

from tests.convergence.helpers import docker_app
from tests.support.wait import wait_until

APP = "logburst"  # the app's saltyard.service label: the name its lines are filed under
ENVS = ("fat", "uat", "prod")
LOG_NODE = "log1"
APPS_DIR = "/var/log/saltyard/apps"

# The task: an HTTP server on $PORT0 (so the test can see it keeps serving) that writes numbered
# lines to stdout on request, at a constant rate whatever the pipeline does (an open model).
EMITTER = r"""
import http.server, os, sys, threading, time, urllib.parse
lock = threading.Lock()
out = sys.stdout.buffer
def burst(run, start, count, rate):
    t0 = time.monotonic()
    for i in range(start, start + count):
        delay = t0 + (i - start) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with lock:
            out.write(b"logtest %s %d %.6f\n" % (run.encode(), i, time.time()))
            out.flush()
def raw(run):
    with lock:
        out.write(b"logtest " + run.encode() + b" 0 bin\x01\x02\xff\xfeary\n")
        out.write(b"logtest " + run.encode() + b" 1 " + b"y" * 65536 + b"\n")
        out.write(b"\n")
        out.write(b"logtest " + run.encode() + b" 2 after\n")
        out.flush()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/burst":
            args = (q["run"], int(q.get("start", 0)), int(q["count"]), float(q["rate"]))
            threading.Thread(target=burst, args=args, daemon=True).start()
        elif url.path == "/raw":
            raw(q["run"])
        body = os.environ.get("MESOS_TASK_ID", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT0"])), Handler).serve_forever()
"""


def emitter_app(image: str, env: str) -> dict:
    app = docker_app(
        f"/convergence/{APP}-{env}",
        image,
        1,
        env=env,
        cmd='exec python3 -u -c "$EMITTER"',
        health_check={"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 2},
    )
    app["env"] = {"EMITTER": EMITTER}
    app["labels"] = {"saltyard.service": APP}
    return app


def start_burst(tasks: dict, run: str, count: int, rate: float) -> None:
    for task in tasks.values():
        r = requests.get(
            f"{task['url']}/burst",
            params={"run": run, "count": count, "rate": rate},
            timeout=5,
        )
        r.raise_for_status()


def arrived(cluster, run: str) -> dict[str, collections.Counter]:
    """Per env, how often each line number of ``run`` is in the log node's files."""
    script = (
        f"cat {APPS_DIR}/*/{APP}/*.log 2>/dev/null | "
        f'awk \'$6 == "logtest" && $7 == "{run}" {{print $2, $8}}\''
    )
    _, text = cluster.exec(LOG_NODE, ["sh", "-c", script], check=False)
    counts: dict[str, collections.Counter] = {env: collections.Counter() for env in ENVS}
    for line in text.splitlines():
        env, number = line.split()
        counts.setdefault(env, collections.Counter())[int(number)] += 1
    return counts


def deploy(cluster, marathon: str, image: str) -> dict[str, dict]:
    """One emitting task per env, healthy: {env: {"id", "host", "url"}}."""
    addresses = {n.name: n.address for n in cluster.nodes}
    for env in ENVS:
        app = emitter_app(image, env)
        out = cluster.salt(
            [marathon],
            "state.single",
            "marathon_application.present",
            f"name={app['id']}",
            f"app={json.dumps(app)}",
            "timeout=240",
        )[marathon]
        (ret,) = out.values()
        assert ret["result"] is True, ret

    def running() -> dict[str, dict] | None:
        found = {}
        for env in ENVS:
            listed = cluster.salt([marathon], "marathon_api.tasks", f"/convergence/{APP}-{env}")
            healthy = [
                t
                for t in listed[marathon]
                if t.get("healthCheckResults") and all(h["alive"] for h in t["healthCheckResults"])
            ]
            if len(healthy) != 1:
                return None
            task = healthy[0]
            found[env] = {
                "id": task["id"],
                "host": task["host"],
                "url": f"http://{addresses[task['host']]}:{task['ports'][0]}",
            }
        return found

    return wait_until(running, timeout=240, interval=2, message="one healthy emitter per env")


def remove(cluster, marathon: str) -> None:
    for env in ENVS:
        cluster.salt(
            [marathon],
            "state.single",
            "marathon_application.absent",
            f"name=/convergence/{APP}-{env}",
            "force=True",
        )
