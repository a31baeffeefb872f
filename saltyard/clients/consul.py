"""The project's one client for Consul's HTTP API: how a py-consul client is built (address,
token, timeouts, TLS), how its errors are reported, and the raw JSON PUT that py-consul gets
wrong for us. The ``consul_acl`` Salt module and the bridge (saltyard/bridge/consul_store.py)
both build on it; it imports neither Salt nor the daemons.

Two py-consul habits it corrects:
- the ``CONSUL_HTTP_TOKEN`` (and ``CONSUL_HTTP_ADDR``) environment variables override what the
  caller passes; here the caller's token and address are the ones used;
- some calls send fields Consul 1.8 refuses or drop the ACL token (``txn.put``), so ``put``
  sends JSON through py-consul's own HTTP transport with the token's header.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import consul
import consul.base
import requests
from consul.exceptions import ACLPermissionDenied, ConsulException, NotFound

DEFAULT_PORT = 8500
DEFAULT_TIMEOUT = 10.0

T = TypeVar("T")


class ConsulError(Exception):
    """Consul answered with an error (``status``), or not at all (``status`` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ConsulUnavailable(ConsulError):
    """No answer, or no leader: the agent is down, restarting, unreachable or electing."""


class ConsulDenied(ConsulError):
    """403: the token lacks a permission."""


def parse_address(address: str) -> tuple[str, str, int]:
    """``http(s)://HOST[:PORT]`` or ``HOST[:PORT]`` -> (scheme, host, port). Raises ValueError
    naming the address when it is neither."""
    text = str(address or "").strip()
    if "//" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or port == -1
        or parsed.path not in ("", "/")
    ):
        raise ValueError(
            f"Consul address {address!r}: expected http(s)://HOST[:PORT] or HOST[:PORT]"
        )
    default = 443 if parsed.scheme == "https" else DEFAULT_PORT
    return parsed.scheme, parsed.hostname, port or default


class ConsulClient:
    """A py-consul client (``api``) plus the error mapping and raw PUT both users need.

    ``verify``: True, False or a CA bundle path for https; ``cert``: a client certificate
    (path, or (cert, key) paths) for agents that require one."""

    def __init__(
        self,
        address: str = f"127.0.0.1:{DEFAULT_PORT}",
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
    ):
        scheme, host, port = parse_address(address)
        self.url = f"{scheme}://{host}:{port}"
        self.api = consul.Consul(
            host=host,
            port=port,
            scheme=scheme,
            token=token,
            verify=verify,
            cert=cert,
            connections_timeout=timeout,
        )
        # py-consul lets CONSUL_HTTP_TOKEN override the argument; the caller decides instead.
        self.api.token = token

    def call(self, fn: Callable[[], T], what: str) -> T:
        """Run one py-consul call, mapping its and requests' errors onto ours; ``what`` says
        what was being done, for the message."""
        try:
            return fn()
        except requests.RequestException as exc:
            raise ConsulUnavailable(f"{what}: no answer from Consul at {self.url}: {exc}") from exc
        except ACLPermissionDenied as exc:
            raise ConsulDenied(f"{what}: permission denied by Consul ACLs: {exc}", 403) from exc
        except NotFound as exc:
            raise ConsulError(f"{what}: not found: {exc}", 404) from exc
        except ConsulException as exc:
            text = str(exc)
            status = int(text[:3]) if text[:3].isdigit() else None
            if status in (500, 502, 503, 504) and "leader" in text.lower():
                raise ConsulUnavailable(f"{what}: {text}", status) from exc
            raise ConsulError(f"{what}: {text}", status) from exc

    def put(self, path: str, body: Any, what: str) -> tuple[int, Any]:
        """PUT ``body`` as JSON to ``path``; (status, decoded answer). Raises ConsulDenied on
        403 and ConsulUnavailable on 5xx; any other status is the caller's to judge (a refused
        transaction answers 409 with the reasons in its body)."""
        response = self.call(
            lambda: self.api.http.put(
                _unchecked, path, data=json.dumps(body), headers=self.api.prepare_headers()
            ),
            what,
        )
        try:
            decoded = json.loads(response.body) if response.body else None
        except ValueError:
            decoded = response.body
        if response.code == 403:
            raise ConsulDenied(f"{what}: permission denied by Consul ACLs: {decoded}", 403)
        if response.code >= 500:
            raise ConsulUnavailable(f"{what}: HTTP {response.code}: {decoded}", response.code)
        return response.code, decoded

    def put_json(self, path: str, body: Any, what: str) -> Any:
        """``put`` that accepts only 200 and returns the decoded answer."""
        status, decoded = self.put(path, body, what)
        if status != 200:
            raise ConsulError(f"{what}: HTTP {status}: {decoded}", status)
        return decoded

    def leader(self) -> str:
        """The Raft leader's address, or "" while there is none."""
        return self.call(self.api.status.leader, "asking for the Raft leader") or ""


def _unchecked(response: consul.base.Response) -> consul.base.Response:
    return response
