"""hello: the example application that the release workflow builds and releases (issue 14).

A small HTTP service on the standard library only, so its image needs nothing but python3:

- ``GET /health`` answers 200 while the service takes new work, and 503 once it was told to stop
  (so Marathon's health check and the bridge take it out of the load balancers first);
- ``GET /version`` answers the version in ``release.json`` (what the smoke test checks);
- any other ``GET`` answers a greeting that names the version.

``release.json`` (beside this file, committed with the code) holds the version and, for the
bad-release tests, faults that a commit may turn on: ``error_share`` (the share of requests,
0..1, answered with 500) and ``delay_ms`` (added before every answer but /health's).

On SIGTERM it keeps serving for ``drain_seconds`` (``release.json``, default 5) and then exits:
Marathon kills a task with SIGTERM while the load balancers may still send it requests for a
moment (docs/lb.md), and those must be answered, not refused.

The port is ``CONTAINER_PORT`` (the release workflow sets it to the app's container port, which
Docker's bridge maps to a host port: Marathon's own ``PORT`` and ``PORT0`` name that host port),
else ``PORT0`` (Marathon's first port, for host networking), else 8080.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RELEASE_FILE = Path(__file__).with_name("release.json")


def load_release(path: Path = RELEASE_FILE) -> dict:
    """The committed release data, checked: a bad value stops the service at start, with the
    value named, rather than serving a fault nobody asked for."""
    data = json.loads(path.read_text())
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise SystemExit(f"{path}: version {version!r} is not a non-empty string")
    share = _number(path, data, "error_share", 0, 0, 1)
    delay = _number(path, data, "delay_ms", 0, 0, 60_000)
    drain = _number(path, data, "drain_seconds", 5, 0, 300)
    return {"version": version, "error_share": share, "delay_ms": delay, "drain_seconds": drain}


def _number(path: Path, data: dict, key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SystemExit(f"{path}: {key} {value!r} is not a number from {low} to {high}")
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HelloServer

    def log_message(self, fmt, *args):  # one line per request would flood the node's syslog
        pass

    def do_GET(self):  # noqa: N802 - the name http.server calls
        release = self.server.release
        if self.path == "/health":
            if self.server.stopping.is_set():
                return self.answer(503, "stopping\n")
            return self.answer(200, "ok\n")
        if release["delay_ms"]:
            time.sleep(release["delay_ms"] / 1000)
        if release["error_share"] and random.random() < release["error_share"]:
            return self.answer(500, f"fault injected by release.json ({release['version']})\n")
        if self.path == "/version":
            return self.answer(200, release["version"] + "\n")
        return self.answer(200, f"hello from {release['version']}\n")

    def answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HelloServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, release: dict):
        super().__init__(address, Handler)
        self.release = release
        self.stopping = threading.Event()


def main() -> int:
    release = load_release()
    port = int(os.environ.get("CONTAINER_PORT") or os.environ.get("PORT0") or 8080)
    server = HelloServer(("0.0.0.0", port), release)

    def on_term(signum, frame):
        # Keep answering for the drain time (health says 503 meanwhile), then stop. The
        # shutdown runs in a thread: serve_forever runs in this one.
        if server.stopping.is_set():
            return
        server.stopping.set()
        print(f"hello {release['version']}: SIGTERM, serving {release['drain_seconds']} s more")
        threading.Timer(release["drain_seconds"], server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"hello {release['version']} listening on port {port}", flush=True)
    server.serve_forever()
    print(f"hello {release['version']}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
