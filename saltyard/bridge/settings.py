"""The bridge's settings: command-line flags plus secrets from the environment.

Secrets come only from the environment (MARATHON_HTTP_CREDENTIALS, CONSUL_HTTP_TOKEN), so they
never show in ``ps``; a URL with credentials in it is refused for the same reason.
"""

from __future__ import annotations

import argparse
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The inventory's default and name rule, so the bridge and the inventory agree on what an
# environment is.
from saltyard.inventory import DEFAULT_ENVIRONMENTS, NAME_RE

from .registrations import parse_ipv4

DEFAULT_LISTEN = ("127.0.0.1", 9158)
DEFAULT_LOCK_KEY = "saltyard/bridge/leader"
# Where the IPAM plugin keeps its allocations (saltyard.ipam.store.DEFAULT_PREFIX, with the
# trailing slash a recursive read needs: without it `saltyard/ipam` would also match
# `saltyard/ipam-other/...`).
DEFAULT_IPAM_PREFIX = "saltyard/ipam/"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it and says what is expected."""


@dataclass
class Settings:
    marathon_url: str
    consul_url: str = "http://127.0.0.1:8500"
    listen: tuple[str, int] = DEFAULT_LISTEN
    resync_interval: float = 60.0
    session_ttl: float = 15.0
    lock_delay: float = 15.0
    lock_key: str = DEFAULT_LOCK_KEY
    host_addresses: dict[str, str] = field(default_factory=dict)
    default_env: str | None = None
    # The cluster's environments (the inventory's cluster.environments, in promotion order): an
    # app in any other environment is not registered.
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    event_stream_timeout: float = 60.0
    request_timeout: float = 10.0
    max_backoff: float = 30.0
    unknown_health_grace: float = 90.0
    # Freeing IPAM allocations whose Marathon task is gone (docs/bridge.md). Off by default: a
    # cluster without the IPAM plugin then needs no ACL rule on its keys.
    ipam_reconcile: bool = False
    ipam_prefix: str = DEFAULT_IPAM_PREFIX
    ipam_grace: float = 300.0
    log_level: str = "INFO"
    marathon_credentials: tuple[str, str] | None = field(default=None, repr=False)
    consul_token: str | None = field(default=None, repr=False)


def _url(name: str, value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(f"{name} {value!r}: expected http(s)://HOST[:PORT]")
    if parsed.username or parsed.password:
        raise SettingsError(
            f"{name}: credentials in the URL would show in `ps`; use the environment "
            "(MARATHON_HTTP_CREDENTIALS=user:password, CONSUL_HTTP_TOKEN=...)"
        )
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise SettingsError(f"{name} {value!r}: {exc}") from None
    return value.rstrip("/")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"--listen {value!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _host_address(value: str) -> tuple[str, str]:
    host, sep, address = value.partition("=")
    ipv4 = parse_ipv4(address.strip())
    if not sep or not host.strip() or ipv4 is None:
        raise SettingsError(f"--host-address {value!r}: expected AGENT_HOST=IPv4_ADDRESS")
    return host.strip(), ipv4


def _environments(value: str) -> tuple[str, ...]:
    names = [name.strip() for name in value.split(",")]
    if not value.strip() or not all(names):
        raise SettingsError(f"--environments {value!r}: expected ENV,ENV,... (e.g. fat,uat,prod)")
    for name in names:
        if not NAME_RE.match(name):
            raise SettingsError(
                f"--environments: {name!r} is not a DNS label (lowercase letters, digits, '-')"
            )
        if names.count(name) > 1:
            raise SettingsError(f"--environments: {name!r} is listed twice")
    return tuple(names)


def _positive(name: str, value: float, low: float = 0.0) -> float:
    if not value > low:
        raise SettingsError(f"{name} {value:g}: must be more than {low:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m saltyard.bridge",
        description="Marathon-to-Consul bridge: registers healthy Marathon tasks as Consul "
        "service instances (event stream plus periodic full resync; one active bridge per "
        "Consul lock). Secrets come from the environment: MARATHON_HTTP_CREDENTIALS "
        "(user:password) and CONSUL_HTTP_TOKEN.",
    )
    parser.add_argument("--marathon", required=True, metavar="URL", help="Marathon base URL")
    parser.add_argument(
        "--consul", default="http://127.0.0.1:8500", metavar="URL", help="Consul agent HTTP URL"
    )
    parser.add_argument(
        "--listen",
        default=f"{DEFAULT_LISTEN[0]}:{DEFAULT_LISTEN[1]}",
        metavar="HOST:PORT",
        help="where /health and /metrics are served (default %(default)s)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="full resync period, besides every stream (re)connect (default %(default)g)",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="leader session TTL; Consul refuses less than its session_ttl_min, 10 s by "
        "default (default %(default)g)",
    )
    parser.add_argument(
        "--lock-delay",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long the lock stays blocked after a holder died (default %(default)g)",
    )
    parser.add_argument("--lock-key", default=DEFAULT_LOCK_KEY, help="KV key of the leader lock")
    parser.add_argument(
        "--host-address",
        action="append",
        default=[],
        metavar="HOST=IPv4",
        help="the address of an agent host, instead of resolving its name; repeatable",
    )
    parser.add_argument(
        "--default-env",
        metavar="ENV",
        help="env tag for apps with neither a saltyard.env label nor an env constraint",
    )
    parser.add_argument(
        "--environments",
        default=",".join(DEFAULT_ENVIRONMENTS),
        metavar="ENV,ENV,...",
        help="the cluster's environments (the inventory's cluster.environments); apps in any "
        "other are skipped as unknown_env (default %(default)s)",
    )
    parser.add_argument(
        "--event-stream-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="reconnect when the event stream sends nothing, heartbeats included, for this "
        "long (default %(default)g)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="timeout of each Marathon and Consul request (default %(default)g)",
    )
    parser.add_argument(
        "--max-backoff",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest wait between retries while Marathon or Consul is away (default %(default)g)",
    )
    parser.add_argument(
        "--unknown-health-grace",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="how long a registered task stays registered while Marathon shows no health "
        "result for it (after a Marathon restart or leader change, results are back only "
        "after the next check); 0 deregisters it at once (default %(default)g)",
    )
    parser.add_argument(
        "--ipam-reconcile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="free IPAM allocations (saltyard.ipam's records in Consul) whose Marathon task "
        "has been gone for --ipam-grace seconds; the token then needs write on --ipam-prefix "
        "(default: off)",
    )
    parser.add_argument(
        "--ipam-prefix",
        default=DEFAULT_IPAM_PREFIX,
        metavar="KEY_PREFIX",
        help="where the IPAM plugin keeps its allocations (default %(default)s)",
    )
    parser.add_argument(
        "--ipam-grace",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long an allocation's Marathon task must have been gone before the "
        "allocation is freed (default %(default)g)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser


def parse_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Validate parsed flags and read the secrets; raises SettingsError."""
    credentials = None
    raw = environ.get("MARATHON_HTTP_CREDENTIALS")
    if raw:
        user, sep, password = raw.partition(":")
        if not sep or not user:
            raise SettingsError("MARATHON_HTTP_CREDENTIALS must be user:password")
        credentials = (user, password)
    level = str(args.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"--log-level {args.log_level!r}: DEBUG, INFO, WARNING or ERROR")
    lock_key = args.lock_key.strip("/")
    if not lock_key:
        raise SettingsError("--lock-key must not be empty")
    session_ttl = _positive("--session-ttl", args.session_ttl)
    if session_ttl > 86400:
        raise SettingsError(f"--session-ttl {session_ttl:g}: Consul allows at most 86400 s")
    if not args.lock_delay >= 0:
        raise SettingsError(f"--lock-delay {args.lock_delay:g}: must be 0 or more")
    if not args.unknown_health_grace >= 0:
        raise SettingsError(
            f"--unknown-health-grace {args.unknown_health_grace:g}: must be 0 or more"
        )
    ipam_prefix = args.ipam_prefix.strip().strip("/")
    if not ipam_prefix:
        raise SettingsError(f"--ipam-prefix {args.ipam_prefix!r}: must not be empty")
    if not math.isfinite(args.ipam_grace) or not args.ipam_grace > 0:
        raise SettingsError(f"--ipam-grace {args.ipam_grace:g}: must be a number of seconds > 0")
    if args.default_env is not None and not args.default_env.strip():
        raise SettingsError("--default-env must not be empty")
    environments = _environments(args.environments)
    if args.default_env is not None and args.default_env not in environments:
        raise SettingsError(
            f"--default-env {args.default_env!r} is not one of --environments "
            f"({', '.join(environments)})"
        )
    return Settings(
        marathon_url=_url("--marathon", args.marathon),
        consul_url=_url("--consul", args.consul),
        listen=_listen(args.listen),
        resync_interval=_positive("--resync-interval", args.resync_interval),
        session_ttl=session_ttl,
        lock_delay=args.lock_delay,
        lock_key=lock_key,
        host_addresses=dict(_host_address(v) for v in args.host_address),
        default_env=args.default_env,
        environments=environments,
        event_stream_timeout=_positive("--event-stream-timeout", args.event_stream_timeout),
        request_timeout=_positive("--request-timeout", args.request_timeout),
        max_backoff=_positive("--max-backoff", args.max_backoff),
        unknown_health_grace=args.unknown_health_grace,
        ipam_reconcile=args.ipam_reconcile,
        ipam_prefix=ipam_prefix + "/",
        ipam_grace=args.ipam_grace,
        log_level=level,
        marathon_credentials=credentials,
        consul_token=environ.get("CONSUL_HTTP_TOKEN") or None,
    )


def settings_from_argv(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Parse ``argv``; exits with status 2 and a one-line reason on a bad setting."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return parse_settings(args, environ)
    except SettingsError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
