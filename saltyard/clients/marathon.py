"""The project's one Marathon HTTP client (REST API v2), requests-based.

Every call has a timeout; every HTTP error raises a MarathonError subclass carrying Marathon's
``message`` and ``details`` (422), or the ``deployments`` holding an app (409). Salt modules are
meant to be thin adapters over this class.

    client = MarathonClient("http://127.0.0.1:8080")
    ref = client.update_app("/web", {"instances": 3})
    client.wait_for_deployment(ref.deployment_id, timeout=300, app_id="/web")
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

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


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _app_path(app_id: str) -> str:
    parts = [p for p in app_id.split("/") if p]
    if not parts:
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
            message = body.get("message") if isinstance(body, dict) else None
            details = body.get("details") if isinstance(body, dict) else None
            message = message or (body if isinstance(body, str) and body else response.reason)
            cls = {
                404: MarathonNotFound,
                409: MarathonConflict,
                400: MarathonValidationError,
                422: MarathonValidationError,
            }.get(response.status_code, MarathonHTTPError)
            raise cls(
                str(message),
                status=response.status_code,
                method=method,
                url=url,
                details=details if isinstance(details, list) else None,
                body=body,
            )
        return body if expect_json else response.text

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
