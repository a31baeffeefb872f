"""The IPAM daemon's configuration file (JSON, written by a Salt state), and its refusal of a bad
value with a message naming it.

::

    {
      "host": "agent-fat",
      "plugin": {"name": "saltyard-ipam", "socket": "/run/docker/plugins/saltyard-ipam.sock"},
      "consul": {"address": "http://127.0.0.1:8500", "token_file": "/etc/saltyard/ipam.token",
                 "timeout": 10, "key_prefix": "saltyard/ipam"},
      "docker": {"url": "unix:///var/run/docker.sock", "timeout": 30},
      "reconcile": {"enabled": true, "interval": 30, "grace": 300},
      "log_level": "INFO",
      "pools": [{"name": "tasks", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1",
                 "range": "172.30.0.128/26", "reserved": ["172.30.0.130"]}]
    }

Only ``pools`` is required. The Consul token comes from ``consul.token_file`` or, without one,
from the environment (``CONSUL_HTTP_TOKEN``), never from the file itself: the file is
configuration, readable where the token should not be.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saltyard.clients.consul import parse_address

from .errors import IpamError, PoolError
from .pools import Pool, parse_pools
from .store import DEFAULT_PREFIX

PLUGIN_DIR = "/run/docker/plugins"
DEFAULT_PLUGIN_NAME = "saltyard-ipam"
# Docker names a socket plugin after its file (NAME.sock): keep the name a plain file name.
PLUGIN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

SECTIONS: dict[str, tuple[str, ...]] = {
    "": ("host", "plugin", "consul", "docker", "reconcile", "log_level", "pools"),
    "plugin": ("name", "socket"),
    "consul": ("address", "token_file", "timeout", "key_prefix"),
    "docker": ("url", "timeout"),
    "reconcile": ("enabled", "interval", "grace"),
}


class SettingsError(IpamError, ValueError):
    """A setting is missing or wrong; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    pools: tuple[Pool, ...]
    host: str
    plugin_name: str = DEFAULT_PLUGIN_NAME
    socket_path: str = f"{PLUGIN_DIR}/{DEFAULT_PLUGIN_NAME}.sock"
    consul_address: str = "http://127.0.0.1:8500"
    consul_timeout: float = 10.0
    key_prefix: str = DEFAULT_PREFIX
    # None: the environment's engine (DOCKER_HOST, else /var/run/docker.sock).
    docker_url: str | None = None
    docker_timeout: float = 30.0
    reconcile_enabled: bool = True
    reconcile_interval: float = 30.0
    reconcile_grace: float = 300.0
    log_level: str = "INFO"
    consul_token: str | None = field(default=None, repr=False)

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise SettingsError(f"{name}: expected an object, not {value!r}")
    unknown = sorted(set(value) - set(SECTIONS[name]))
    if unknown:
        raise SettingsError(
            f"{name}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(SECTIONS[name])})"
        )
    return value


def _number(where: str, value: Any, default: float, *, zero_ok: bool = False) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(f"{where} {value!r}: expected a number of seconds")
    if value < 0 or (value == 0 and not zero_ok):
        raise SettingsError(f"{where} {value!r}: must be more than 0")
    return float(value)


def _text(where: str, value: Any, default: str | None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{where} {value!r}: expected a non-empty string")
    return value.strip()


def parse_settings(data: Any, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a config file's decoded JSON; raises SettingsError (or PoolError, also a
    ValueError) naming the bad value. Reads ``consul.token_file`` when one is named."""
    environ = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise SettingsError(f"the configuration must be a JSON object, not {data!r}")
    unknown = sorted(set(data) - set(SECTIONS[""]))
    if unknown:
        raise SettingsError(
            f"unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(SECTIONS[''])})"
        )
    try:
        pools = parse_pools(data.get("pools"))
    except PoolError as exc:
        raise SettingsError(f"pools: {exc}") from None

    plugin = _section(data, "plugin")
    name = _text("plugin.name", plugin.get("name"), DEFAULT_PLUGIN_NAME)
    if not PLUGIN_NAME_RE.match(name):
        raise SettingsError(
            f"plugin.name {name!r}: expected lowercase letters, digits, '.', '_' or '-' "
            "(Docker knows a socket plugin by its file name)"
        )
    socket_path = _text("plugin.socket", plugin.get("socket"), f"{PLUGIN_DIR}/{name}.sock")
    if not socket_path.startswith("/"):
        raise SettingsError(f"plugin.socket {socket_path!r}: expected an absolute path")
    if str(Path(socket_path).parent) == PLUGIN_DIR and Path(socket_path).name != f"{name}.sock":
        raise SettingsError(
            f"plugin.socket {socket_path!r}: Docker would know it as plugin "
            f"{Path(socket_path).stem!r}, not {name!r}; use {PLUGIN_DIR}/{name}.sock"
        )

    consul = _section(data, "consul")
    address = _text("consul.address", consul.get("address"), "http://127.0.0.1:8500")
    try:
        parse_address(address)
    except ValueError as exc:
        raise SettingsError(f"consul.address: {exc}") from None
    if "@" in address:
        raise SettingsError("consul.address: no credentials in the address; use token_file")
    token_file = _text("consul.token_file", consul.get("token_file"), None)
    if token_file:
        try:
            token = Path(token_file).read_text().strip() or None
        except OSError as exc:
            raise SettingsError(f"consul.token_file {token_file!r}: {exc.strerror}") from None
        if token is None:
            raise SettingsError(f"consul.token_file {token_file!r} is empty")
    else:
        token = environ.get("CONSUL_HTTP_TOKEN") or None
    prefix = _text("consul.key_prefix", consul.get("key_prefix"), DEFAULT_PREFIX).strip("/")
    if not prefix:
        raise SettingsError("consul.key_prefix must not be empty")

    docker = _section(data, "docker")
    reconcile = _section(data, "reconcile")
    enabled = reconcile.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SettingsError(f"reconcile.enabled {enabled!r}: expected true or false")
    level = str(data.get("log_level") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"log_level {data.get('log_level')!r}: one of {', '.join(LOG_LEVELS)}")
    host = _text("host", data.get("host"), None) or socket.gethostname()
    return Settings(
        pools=pools,
        host=host,
        plugin_name=name,
        socket_path=socket_path,
        consul_address=address,
        consul_timeout=_number("consul.timeout", consul.get("timeout"), 10.0),
        key_prefix=prefix,
        docker_url=_text("docker.url", docker.get("url"), None),
        docker_timeout=_number("docker.timeout", docker.get("timeout"), 30.0),
        reconcile_enabled=enabled,
        reconcile_interval=_number("reconcile.interval", reconcile.get("interval"), 30.0),
        reconcile_grace=_number("reconcile.grace", reconcile.get("grace"), 300.0, zero_ok=True),
        log_level=level,
        consul_token=token,
    )


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration file at ``path``; raises SettingsError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"configuration {str(path)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"configuration {str(path)!r} is not JSON: {exc}") from None
    return parse_settings(data, environ)
