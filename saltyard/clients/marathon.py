"""The project's one Marathon HTTP client (REST API v2), requests-based.

Every call has a timeout; every HTTP error raises a MarathonError subclass carrying Marathon's
``message`` and ``details`` (422), or the ``deployments`` holding an app (409). Salt modules are
meant to be thin adapters over this class. Marathon's rules for app definitions (id syntax,
shapes, validation) are not the client's: they live in ``saltyard.marathon_appdef``.

    client = MarathonClient("http://127.0.0.1:8080")
    ref = client.update_app("/web", {"instances": 3})
    client.wait_for_deployment(ref.deployment_id, timeout=300, app_id="/web")
    for event in client.events(["status_update_event"]):  # GET /v2/events, until it ends
        print(event.type, event.data.get("taskId"))
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from saltyard.marathon_appdef import canonical_id

App = dict[str, Any]
Task = dict[str, Any]
DeploymentInfo = dict[str, Any]


class MarathonError(Exception):
    """Base class. ``status`` is None when no HTTP answer was received."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        url: str = "",
        details: list | None = None,
        body: Any = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.url = url
        self.details = details or []
        self.body = body

    def __str__(self) -> str:
        where = f"{self.method} {self.url}: " if self.method else ""
        code = f"HTTP {self.status}: " if self.status else ""
        text = f"{where}{code}{self.message}"
        for d in self.details:
            if isinstance(d, dict):
                text += f"; {d.get('path')}: {', '.join(map(str, d.get('errors', [])))}"
        return text


class MarathonConnectionError(MarathonError):
    """No answer (connection refused, timeout, DNS)."""


class MarathonHTTPError(MarathonError):
    """Any 4xx/5xx answer not covered by a subclass."""


class MarathonNotFound(MarathonHTTPError):
    pass


class MarathonConflict(MarathonHTTPError):
    """409: the app exists already, or deployments hold it (see ``deployment_ids``)."""

    @property
    def deployment_ids(self) -> list[str]:
        deps = self.body.get("deployments", []) if isinstance(self.body, dict) else []
        return [d.get("id") for d in deps if isinstance(d, dict)]


class MarathonValidationError(MarathonHTTPError):
    """400 or 422: the definition was refused; ``details`` lists ``{path, errors}``."""


class DeploymentFailed(MarathonError):
    """The deployment disappeared without the app reaching its version (cancelled/replaced)."""


class DeploymentTimeout(MarathonError):
    """The deployment was still running when the timeout expired."""


@dataclass(frozen=True)
class DeploymentRef:
    deployment_id: str | None
    version: str | None


@dataclass(frozen=True)
class MarathonEvent:
    """One frame of the event stream: ``type`` (``status_update_event``, ...) and the decoded JSON
    ``data`` (Marathon's own fields, ``eventType`` and ``timestamp`` included)."""

    type: str
    data: dict[str, Any]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _app_path(app_id: str) -> str:
    """The URL path of ``app_id`` (canonical form, each segment quoted)."""
    parts = canonical_id(app_id).split("/")[1:]
    if not parts[0]:
        raise ValueError(f"empty app id {app_id!r}")
    return "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


class MarathonClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | tuple[float, float] = (3.05, 15.0),
        auth: tuple[str, str] | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if auth:
            self.session.auth = auth
        self.session.verify = verify
        self._sleep = sleep
        self._clock = clock

    # ------------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise MarathonConnectionError(
                f"no answer from Marathon: {exc}", method=method, url=url
            ) from exc
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text
        if response.status_code >= 400:
            raise self._http_error(response, body, method, url)
        return body if expect_json else response.text

    @staticmethod
    def _http_error(
        response: requests.Response, body: Any, method: str, url: str
    ) -> MarathonHTTPError:
        message = body.get("message") if isinstance(body, dict) else None
        details = body.get("details") if isinstance(body, dict) else None
        message = message or (body if isinstance(body, str) and body else response.reason)
        cls = {
            404: MarathonNotFound,
            409: MarathonConflict,
            400: MarathonValidationError,
            422: MarathonValidationError,
        }.get(response.status_code, MarathonHTTPError)
        return cls(
            str(message),
            status=response.status_code,
            method=method,
            url=url,
            details=details if isinstance(details, list) else None,
            body=body,
        )

    @staticmethod
    def _deployment_ref(body: Any) -> DeploymentRef:
        body = body if isinstance(body, dict) else {}
        return DeploymentRef(body.get("deploymentId"), body.get("version"))

    # ------------------------------------------------------------------ server

    def ping(self) -> bool:
        return self._request("GET", "/ping", expect_json=False).strip() == "pong"

    def info(self) -> dict:
        return self._request("GET", "/v2/info")

    def leader(self) -> str | None:
        """``host:port`` of the leading Marathon, None while there is none (404)."""
        try:
            return self._request("GET", "/v2/leader").get("leader")
        except MarathonNotFound:
            return None

    # ------------------------------------------------------------------ apps

    def list_apps(
        self, *, embed: Iterable[str] = (), id_contains: str | None = None, label: str | None = None
    ) -> list[App]:
        params: dict[str, Any] = {}
        if embed:
            params["embed"] = [f"apps.{e}" for e in embed]
        if id_contains:
            params["id"] = id_contains
        if label:
            params["label"] = label
        return self._request("GET", "/v2/apps", params=params)["apps"]

    def get_app(self, app_id: str) -> App:
        return self._request("GET", "/v2/apps" + _app_path(app_id))["app"]

    def app_exists(self, app_id: str) -> bool:
        try:
            self.get_app(app_id)
        except MarathonNotFound:
            return False
        return True

    def create_app(self, app: App) -> App:
        """POST; returns the created app (with ``deployments``). 409 if the id exists."""
        return self._request("POST", "/v2/apps", json_body=app)

    def update_app(self, app_id: str, changes: App, *, force: bool = False) -> DeploymentRef:
        """PUT: apply ``changes`` (a partial definition); creates the app if it does not exist."""
        body = {k: v for k, v in changes.items() if k not in ("version", "versionInfo")}
        path = "/v2/apps" + _app_path(app_id)
        return self._deployment_ref(
            self._request("PUT", path, params={"force": _bool(force)}, json_body=body)
        )

    def rollback_app(self, app_id: str, version: str, *, force: bool = False) -> DeploymentRef:
        path = "/v2/apps" + _app_path(app_id)
        body = {"version": version}
        return self._deployment_ref(
            self._request("PUT", path, params={"force": _bool(force)}, json_body=body)
        )

    def scale_app(self, app_id: str, instances: int, *, force: bool = False) -> DeploymentRef:
        if instances < 0:
            raise ValueError("instances must be 0 or more")
        # PUT /v2/apps/{id} creates an app that does not exist; scaling must not, so an unknown
        # app is refused here (MarathonNotFound, naming it) before anything is sent.
        self.get_app(app_id)
        return self.update_app(app_id, {"instances": instances}, force=force)

    def restart_app(self, app_id: str, *, force: bool = False) -> DeploymentRef:
        path = "/v2/apps" + _app_path(app_id) + "/restart"
        return self._deployment_ref(self._request("POST", path, params={"force": _bool(force)}))

    def delete_app(self, app_id: str, *, force: bool = False) -> DeploymentRef:
        path = "/v2/apps" + _app_path(app_id)
        return self._deployment_ref(self._request("DELETE", path, params={"force": _bool(force)}))

    def app_versions(self, app_id: str) -> list[str]:
        return self._request("GET", "/v2/apps" + _app_path(app_id) + "/versions")["versions"]

    # ------------------------------------------------------------------ tasks

    def list_tasks(self, app_id: str | None = None) -> list[Task]:
        path = "/v2/apps" + _app_path(app_id) + "/tasks" if app_id else "/v2/tasks"
        return self._request("GET", path)["tasks"]

    def kill_task(
        self, app_id: str, task_id: str, *, scale: bool = False, force: bool = False
    ) -> Task | DeploymentRef:
        """Without ``scale``: the killed task (Marathon starts a replacement). With ``scale``:
        the deployment that lowers ``instances`` by one."""
        path = "/v2/apps" + _app_path(app_id) + "/tasks/" + urllib.parse.quote(task_id, safe="")
        params = {"scale": _bool(scale), "force": _bool(force)}
        body = self._request("DELETE", path, params=params)
        if scale:
            return self._deployment_ref(body)
        return body.get("task", body)

    # ------------------------------------------------------------------ deployments

    def list_deployments(self) -> list[DeploymentInfo]:
        return self._request("GET", "/v2/deployments")

    def get_deployment(self, deployment_id: str) -> DeploymentInfo | None:
        for dep in self.list_deployments():
            if dep.get("id") == deployment_id:
                return dep
        return None

    def cancel_deployment(self, deployment_id: str, *, force: bool = False) -> DeploymentRef | None:
        """Without ``force``: roll back (returns the rollback deployment). With: stop it (None)."""
        path = "/v2/deployments/" + urllib.parse.quote(deployment_id, safe="")
        if force:
            self._request("DELETE", path, params={"force": "true"})
            return None
        return self._deployment_ref(self._request("DELETE", path))

    def wait_for_deployment(
        self,
        deployment_id: str,
        *,
        timeout: float = 300.0,
        interval: float = 1.0,
        app_id: str | None = None,
        version: str | None = None,
    ) -> None:
        """Poll until the deployment is gone. With ``app_id`` (and optionally the ``version`` the
        deployment was for), check the outcome and report why it failed: a deployment that
        vanished while the app is not at ``version`` was cancelled or replaced.

        Raises DeploymentTimeout (with the current step and the app's last task failure) or
        DeploymentFailed.
        """
        deadline = self._clock() + timeout
        last: DeploymentInfo | None = None
        while True:
            current = self.get_deployment(deployment_id)
            if current is None:
                break
            last = current
            if self._clock() >= deadline:
                raise DeploymentTimeout(
                    f"deployment {deployment_id} still running after {timeout:g}s"
                    + self._why(last, app_id),
                    body=last,
                )
            self._sleep(interval)
        if app_id and version:
            try:
                app = self.get_app(app_id)
            except MarathonNotFound:
                raise DeploymentFailed(
                    f"deployment {deployment_id} ended but app {app_id} does not exist"
                ) from None
            if app.get("version") != version:
                raise DeploymentFailed(
                    f"deployment {deployment_id} ended with {app_id} at version "
                    f"{app.get('version')}, not {version}: it was cancelled, rolled back or "
                    "replaced" + self._why(None, app_id),
                    body=app,
                )

    def _why(self, deployment: DeploymentInfo | None, app_id: str | None) -> str:
        parts = []
        if deployment:
            actions = ", ".join(
                f"{a.get('action')} {a.get('app')}" for a in deployment.get("currentActions", [])
            )
            parts.append(
                f"step {deployment.get('currentStep')}/{deployment.get('totalSteps')}: {actions}"
            )
        if app_id:
            try:
                app = self.get_app(app_id)
            except MarathonError:
                app = None
            if app:
                parts.append(
                    f"{app_id}: {app.get('tasksRunning')} running, {app.get('tasksHealthy')} "
                    f"healthy of {app.get('instances')}"
                )
                failure = app.get("lastTaskFailure")
                if failure:
                    parts.append(
                        f"last task failure ({failure.get('state')} on {failure.get('host')}): "
                        f"{failure.get('message')}"
                    )
        return ("; " + "; ".join(parts)) if parts else ""

    # ------------------------------------------------------------------ events

    def events(
        self,
        event_types: Iterable[str] = (),
        *,
        read_timeout: float = 60.0,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[MarathonEvent]:
        """Follow ``GET /v2/events`` (server-sent events), yielding each event as it arrives.

        ``event_types`` filters on Marathon's side (``?event_type=``; empty: every type).
        ``on_open`` is called once the stream is attached and before the first event, so a
        caller can re-read the full state knowing no later change will be missed.

        The iteration ends when Marathon closes the stream (it does on a leader change). A
        stream that sends nothing at all, heartbeats included, for ``read_timeout`` seconds is
        treated as dead (streams can hang silently) and raises MarathonConnectionError, as does
        any failure to connect; an HTTP error answer raises the usual MarathonHTTPError
        subclass. Events carry no ordering guarantee: use them as a signal to re-read state.
        """
        url = self.base_url + "/v2/events"
        params = [("event_type", t) for t in event_types]
        connect = self.timeout[0] if isinstance(self.timeout, tuple) else self.timeout
        try:
            response = self.session.get(
                url,
                params=params,
                headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"},
                stream=True,
                timeout=(connect, read_timeout),
            )
        except requests.RequestException as exc:
            raise MarathonConnectionError(
                f"no answer from Marathon: {exc}", method="GET", url=url
            ) from exc
        with response:
            if response.status_code >= 400:
                try:
                    body: Any = response.json()
                except ValueError:
                    body = response.text
                raise self._http_error(response, body, "GET", url)
            if on_open is not None:
                on_open()
            try:
                yield from _sse_events(response.iter_content(chunk_size=65536))
            except requests.RequestException as exc:
                raise MarathonConnectionError(
                    f"event stream lost: {exc}",
                    method="GET",
                    url=url,
                ) from exc


def client_from_config(config_get: Callable[..., Any], url: str | None = None) -> MarathonClient:
    """A client configured the way saltyard's Salt modules configure it, from ``config_get``
    (Salt's ``config.get``, or any ``get(key, default)``): ``url`` or ``marathon:url`` or the
    inventory's first marathon node on ``marathon:http_port``; credentials from the URL,
    ``marathon:username``/``password`` or, on the marathon nodes, ``marathon:http_credentials``;
    ``marathon:verify``. ValueError when there is no URL at all."""
    if not url:
        url = config_get("marathon:url")
    if not url:
        # config.get, not pillar.get: Salt 3008's pillar.get masks every value outside templates.
        members = config_get("saltyard:members:marathon", []) or []
        if members:
            port = config_get("marathon:http_port", 8080) or 8080
            url = f"http://{members[0]['address']}:{port}"
    if not url:
        raise ValueError(
            "no Marathon URL: pass url=... or set marathon:url in the minion config or pillar"
        )
    # Credentials embedded in the URL are moved into the session's auth, so they never appear
    # in error messages (the client puts the request URL into every error).
    parts = urllib.parse.urlsplit(url)
    auth = None
    if parts.username is not None:
        auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        # rpartition keeps the host as written (IPv6 brackets, port).
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    username = config_get("marathon:username")
    if username:
        auth = (username, config_get("marathon:password", "") or "")
    elif auth is None:
        # On the marathon nodes themselves: the credentials Marathon is configured with.
        creds = config_get("marathon:http_credentials", {}) or {}
        if creds.get("user") and creds.get("password"):
            auth = (creds["user"], creds["password"])
    return MarathonClient(url, auth=auth, verify=config_get("marathon:verify", True))


def _sse_events(chunks: Iterable[bytes]) -> Iterator[MarathonEvent]:
    """Parse a server-sent event stream (the subset Marathon uses: ``event:`` and ``data:``
    fields, ``:`` comments, frames ended by a blank line). Hand-written because it is this small
    and a dependency would be larger than the code; lines are split on LF with an optional CR
    before it, which is what Marathon (Jetty) and the emulator send."""
    pending = b""
    event_type, data_lines = "", []
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data_lines:
                    yield _decode_event(event_type, "\n".join(data_lines))
                event_type, data_lines = "", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event_type = value
            elif field == "data":
                data_lines.append(value)


def _decode_event(event_type: str, data: str) -> MarathonEvent:
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = {"raw": data}
    if not isinstance(decoded, dict):
        decoded = {"raw": decoded}
    return MarathonEvent(event_type or str(decoded.get("eventType") or "message"), decoded)
