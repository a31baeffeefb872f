"""The HTTP API (stdlib ThreadingHTTPServer): routing, JSON bodies, status codes, the SSE stream."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import queue
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from saltyard.marathon_appdef import canonical_id

from .appdef import ValidationFailed
from .core import ApiError, Emulator, parse_bool
from .events import sse_frame

log = logging.getLogger("saltyard.marathon_emulator.http")

APP_PATH = re.compile(r"^(?P<id>/.+?)(?:/(?P<sub>tasks|versions|restart)(?:/(?P<rest>[^/]+))?)?/?$")
HEARTBEAT_SECONDS = 10.0


def embed_set(values: list[str]) -> set[str]:
    """``app.tasks`` / ``apps.tasks`` (comma-separated or repeated) -> {"tasks", ...}."""
    out = set()
    for value in values:
        for item in value.split(","):
            _, _, name = item.strip().partition(".")
            if name:
                out.add(name)
    if "counts" in out:
        out.add("counts")
    if "failures" in out:
        out.add("lastTaskFailure")
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "saltyard-marathon-emulator/0.1"
    protocol_version = "HTTP/1.1"
    emulator: Emulator  # set on the subclass built by make_server
    credentials: bytes | None = None  # b"user:password" when HTTP basic auth is on

    # ----------------------------------------------------------- plumbing

    def log_message(self, fmt, *args):  # route the stdlib access log to logging
        log.debug("%s - %s", self.address_string(), fmt % args)

    def _send(self, status: int, body=None, content_type="application/json", headers=None):
        if body is None:
            payload = b""
        elif isinstance(body, bytes | str):
            payload = body.encode() if isinstance(body, str) else body
        else:
            payload = json.dumps(body).encode()
        self.send_response(status)
        if payload or content_type != "application/json":
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            raise ApiError(
                400,
                {"message": "Invalid JSON", "details": [{"path": "/", "errors": ["empty body"]}]},
            )
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400, {"message": "Invalid JSON", "details": [{"path": "/", "errors": [str(exc)]}]}
            ) from None

    def _dispatch(self):
        parsed = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        path = urllib.parse.unquote(parsed.path)
        if self.credentials is not None and not self._authorized():
            # Marathon answers 401 with a Basic challenge; the body is drained so the
            # keep-alive connection stays usable.
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(
                401,
                {"message": "Invalid username or password."},
                headers={"WWW-Authenticate": 'Basic realm="Mesosphere Marathon"'},
            )
            return
        try:
            self._route(path)
        except ValidationFailed as exc:
            self._send(exc.status, exc.body())
        except ApiError as exc:
            self._send(exc.status, exc.body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:
            log.exception("%s %s failed", self.command, self.path)
            self._send(500, {"message": f"internal error: {exc}"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch  # noqa: N815

    def _authorized(self) -> bool:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, self.credentials)

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return parse_bool(self.q(name), False)

    @property
    def client_ip(self) -> str:
        return self.client_address[0]

    def method_not_allowed(self):
        self._send(405, {"message": "HTTP 405 Method Not Allowed"})

    # ----------------------------------------------------------- routes

    def _route(self, path: str):
        em = self.emulator
        m = self.command
        if path == "/ping":
            return (
                self._send(200, "pong", "text/plain") if m == "GET" else self.method_not_allowed()
            )
        # The Mesos master's maintenance endpoints (the emulator plays Mesos's part too).
        if path == "/master/maintenance/schedule":
            if m == "GET":
                return self._send(200, em.maintenance_schedule())
            if m == "POST":
                em.set_maintenance_schedule(self._read_json())
                return self._send(200)
            return self.method_not_allowed()
        if path == "/master/maintenance/status":
            return (
                self._send(200, em.maintenance_status())
                if m == "GET"
                else self.method_not_allowed()
            )
        if path == "/master/slaves":
            return self._send(200, em.agents_state()) if m == "GET" else self.method_not_allowed()
        if path in ("/master/machine/down", "/master/machine/up"):
            if m != "POST":
                return self.method_not_allowed()
            body = self._read_json()
            (em.machines_down if path.endswith("down") else em.machines_up)(body)
            return self._send(200)
        if path == "/metrics":
            return self._send(200, em.metrics()) if m == "GET" else self.method_not_allowed()
        if path == "/v2/info":
            return self._send(200, em.info()) if m == "GET" else self.method_not_allowed()
        if path == "/v2/leader":
            if m == "GET":
                return self._send(200, {"leader": em.leader})
            if m == "DELETE":
                return self._send(
                    200, {"message": "Leadership abdicated (emulated: nothing changes)"}
                )
            return self.method_not_allowed()
        if path == "/v2/events":
            return self._events() if m == "GET" else self.method_not_allowed()
        if path == "/v2/deployments":
            return (
                self._send(200, em.list_deployments()) if m == "GET" else self.method_not_allowed()
            )
        if path.startswith("/v2/deployments/"):
            if m != "DELETE":
                return self.method_not_allowed()
            dep_id = path[len("/v2/deployments/") :]
            result = em.cancel_deployment(dep_id, self.flag("force"))
            return self._send(202, None) if result is None else self._send(200, result)
        if path == "/v2/tasks":
            if m != "GET":
                return self.method_not_allowed()
            tasks = em.list_tasks()
            status = self.q("status")
            if status:
                tasks = [t for t in tasks if t["state"] == "TASK_" + status.upper()]
            return self._send(200, {"tasks": tasks})
        if path == "/v2/tasks/delete":
            if m != "POST":
                return self.method_not_allowed()
            body = self._read_json()
            ids = body.get("ids") if isinstance(body, dict) else None
            if not isinstance(ids, list):
                raise ApiError(400, {"message": 'expected {"ids": [...]}'})
            result = em.kill_tasks(None, ids, self.flag("scale"), force=self.flag("force"))
            return self._send(200, result)
        if path == "/v2/queue":
            return (
                self._send(200, {"queue": em.queue()}) if m == "GET" else self.method_not_allowed()
            )
        if path in ("/v2/apps", "/v2/apps/"):
            if m == "GET":
                embed = embed_set(self.query.get("embed", []))
                apps = em.list_apps(embed, self.q("id"), self.q("label"))
                cmd = self.q("cmd")
                if cmd:
                    apps = [a for a in apps if cmd in (a.get("cmd") or "")]
                return self._send(200, {"apps": apps})
            if m == "POST":
                app = em.create_app(self._read_json(), self.client_ip)
                return self._send(201, app, headers={"Location": f"/v2/apps{app['id']}"})
            return self.method_not_allowed()
        if path.startswith("/v2/apps/"):
            match = APP_PATH.match(path[len("/v2/apps") :])
            if not match:
                raise ApiError(404, {"message": "HTTP 404 Not Found"})
            app_id = canonical_id(match["id"])
            sub, rest = match["sub"], match["rest"]
            if sub is None:
                if m == "GET":
                    embed = {"tasks", "counts", "deployments", "lastTaskFailure"}
                    return self._send(200, {"app": em.get_app(app_id, embed)})
                if m == "PUT":
                    status, result = em.update_app(
                        app_id, self._read_json(), self.flag("force"), self.client_ip
                    )
                    return self._send(status, result)
                if m == "DELETE":
                    return self._send(200, em.delete_app(app_id, self.flag("force")))
                return self.method_not_allowed()
            if sub == "restart" and rest is None:
                if m != "POST":
                    return self.method_not_allowed()
                return self._send(200, em.restart_app(app_id, self.flag("force"), self.client_ip))
            if sub == "versions":
                if m != "GET":
                    return self.method_not_allowed()
                if rest is None:
                    return self._send(200, {"versions": em.app_versions(app_id)})
                return self._send(200, em.app_version(app_id, rest))
            if sub == "tasks":
                if m == "GET" and rest is None:
                    return self._send(200, {"tasks": em.list_tasks(app_id)})
                if m == "DELETE":
                    ids = [rest] if rest else None
                    result = em.kill_tasks(
                        app_id, ids, self.flag("scale"), self.q("host"), self.flag("force")
                    )
                    if rest and "tasks" in result:
                        result = {"task": result["tasks"][0]}
                    return self._send(200, result)
                return self.method_not_allowed()
        raise ApiError(404, {"message": "HTTP 404 Not Found"})

    # ----------------------------------------------------------- event stream

    def _events(self):
        accept = ",".join(self.headers.get_all("Accept") or [])
        if "text/event-stream" not in accept:
            # Marathon's event stream servlet answers 405 to a GET that does not accept SSE.
            return self._send(
                405, {"message": "HTTP 405 Method Not Allowed: use Accept: text/event-stream"}
            )
        types = {t for v in self.query.get("event_type", []) for t in v.split(",") if t}
        sub = self.emulator.events.subscribe(types, self.client_ip)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        # Chunked like Marathon's (Jetty) stream: clients that read in blocks (requests'
        # iter_lines) get every event as soon as its chunk arrives.
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            chunk(b": attached\n\n")
            while True:
                try:
                    event = sub.queue.get(timeout=HEARTBEAT_SECONDS)
                except queue.Empty:
                    chunk(b"\r\n")
                    continue
                if event is None or sub.dropped:
                    break
                chunk(sse_frame(event))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            sub.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(emulator: Emulator, host: str, port: int, credentials: str | None = None) -> Server:
    bound = {"emulator": emulator, "credentials": credentials.encode() if credentials else None}
    handler = type("BoundHandler", (Handler,), bound)
    return Server((host, port), handler)
