"""HTTP over the plugin's unix socket: the threaded server Docker talks to, and a small client
for the status endpoint (and the tests).

The standard library's http.server does the HTTP; socketserver's threaded unix stream server
does the socket (not HTTPServer, whose ``server_bind`` treats the address as (host, port)).
Docker keeps connections open (HTTP/1.1) and sends each request's body with a Content-Length.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import os
import socket
import socketserver
import stat
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from .plugin import STATUS_METHOD, IpamPlugin

log = logging.getLogger("saltyard.ipam.http")

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


class PluginRequestHandler(BaseHTTPRequestHandler):
    plugin: IpamPlugin  # set on the subclass made by make_plugin_server
    server_version = "saltyard-ipam"
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # a unix socket peer has no address
        return "unix"

    def log_message(self, fmt, *args):  # the stdlib's access log, to logging at DEBUG
        log.debug("%s", fmt % args)

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):  # noqa: N802 - the stdlib's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self._send(400, {"Err": f"request body is not JSON: {raw[:200]!r}"})
            return
        method = self.path.split("?", 1)[0].lstrip("/")
        status, answer = self.plugin.handle(method, body)
        log.debug("%s %s -> %d %s", method, body, status, answer)
        self._send(status, answer)

    def do_GET(self):  # noqa: N802 - the status endpoint also answers a plain GET
        method = self.path.split("?", 1)[0].lstrip("/")
        if method != STATUS_METHOD:
            self._send(404, {"Err": f"GET serves /{STATUS_METHOD} only"})
            return
        self._send(*self.plugin.handle(method, {}))


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # Docker's connections stay open (keep-alive); shutting down does not wait for them.
    block_on_close = False
    # socketserver's default backlog is 5: a burst of container starts connecting at once
    # would find the queue full (EAGAIN) before the accepting thread catches up.
    request_queue_size = 128


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a plugin that died; refuse a live one or any other file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left behind
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process serves {path}")


def make_plugin_server(plugin: IpamPlugin, socket_path: str | Path) -> UnixHTTPServer:
    """Bind the plugin's socket (its directory made if missing, mode 0660: the engine runs as
    root, nobody else needs it)."""
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    handler = type("BoundPluginRequestHandler", (PluginRequestHandler,), {"plugin": plugin})
    server = UnixHTTPServer(str(path), handler)
    os.chmod(path, 0o660)
    return server


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a unix socket."""

    def __init__(self, socket_path: str | Path, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(socket_path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def call_plugin(
    socket_path: str | Path, method: str, body: Any = None, timeout: float = 10.0
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to ``/<method>`` of the plugin at ``socket_path``, as Docker does:
    (HTTP status, decoded answer). Raises OSError when nothing answers."""
    connection = UnixHTTPConnection(socket_path, timeout)
    try:
        payload = json.dumps(body if body is not None else {}).encode()
        connection.request(
            "POST", f"/{method}", body=payload, headers={"Content-Type": CONTENT_TYPE}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def plugin_status(socket_path: str | Path, timeout: float = 5.0) -> dict[str, Any]:
    """The running plugin's status (``/Saltyard.Status``): counters, pools, reconciliation."""
    status, answer = call_plugin(socket_path, STATUS_METHOD, timeout=timeout)
    if status != 200:
        raise OSError(f"{socket_path}: /{STATUS_METHOD} answered {status}: {answer}")
    return answer
