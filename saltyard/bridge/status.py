"""The bridge's HTTP status endpoint: ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus
text). Read-only, no secrets in either."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .daemon import Bridge

log = logging.getLogger("saltyard.bridge.status")


class StatusHandler(BaseHTTPRequestHandler):
    bridge: Bridge  # set on the subclass built by make_status_server
    server_version = "saltyard-bridge"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the stdlib access log, to logging at DEBUG
        log.debug("%s - %s", self.address_string(), fmt % args)

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 - the stdlib's naming
        path = self.path.split("?", 1)[0]
        if path == "/health":
            status, body = self.bridge.health()
            self._send(status, json.dumps(body, indent=1).encode(), "application/json")
        elif path == "/metrics":
            text = self.bridge.prometheus().encode()
            self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")
        else:
            body = b'{"message": "not found: try /health or /metrics"}'
            self._send(404, body, "application/json")

    do_HEAD = do_GET  # noqa: N815


class StatusServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_status_server(bridge: Bridge, host: str, port: int) -> StatusServer:
    handler = type("BoundStatusHandler", (StatusHandler,), {"bridge": bridge})
    return StatusServer((host, port), handler)
