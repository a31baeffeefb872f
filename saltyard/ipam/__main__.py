"""``python -m saltyard.ipam --config /etc/saltyard/ipam.json``
``python -m saltyard.ipam --check --config FILE``: validate FILE and exit (the Salt state's
``check_cmd``, so a bad file never replaces the live one).

Serves Docker's remote IPAM plugin API on the configured unix socket and reconciles this host's
allocations with the local engine's containers. Logs to stderr.

Exit status: 0 after SIGTERM/SIGINT (the socket removed), 2 for a bad configuration or a socket
that cannot be bound (another plugin serves it, no permission). Consul or the engine being away
is not an exit reason: requests answer an error meanwhile and reconciliation waits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .daemon import IpamDaemon
from .settings import SettingsError, load_settings

DEFAULT_CONFIG = "/etc/saltyard/ipam.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m saltyard.ipam",
        description="Docker remote IPAM plugin keeping its allocations in Consul KV "
        "(docs/ipam.md). The Consul token comes from consul.token_file or CONSUL_HTTP_TOKEN.",
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the JSON configuration (default %(default)s)"
    )
    parser.add_argument("--log-level", help="overrides the configuration's log_level")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration (and read its token file) and exit: 0 valid, 2 not",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"python -m saltyard.ipam: {exc}", file=sys.stderr)
        return 2
    if args.check:
        pools = ", ".join(f"{p.name} {p.subnet} range {p.range_text}" for p in settings.pools)
        print(f"{args.config}: valid; plugin {settings.plugin_name}, host {settings.host}, {pools}")
        return 0
    level = (args.log_level or settings.log_level).upper()
    logging.basicConfig(
        level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("saltyard.ipam")
    daemon = IpamDaemon(settings)
    try:
        daemon.bind()
    except OSError as exc:
        print(f"python -m saltyard.ipam: socket {settings.socket_path}: {exc}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        log.info("signal %d: stopping", signum)
        daemon.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.start()
    log.info(
        "IPAM plugin %s for host %s on %s; pools %s; allocations in Consul %s under %s/; %s",
        settings.plugin_name,
        settings.host,
        settings.socket_path,
        ", ".join(f"{p.name} {p.subnet} range {p.range_text} ({p.size})" for p in settings.pools),
        settings.consul_address,
        settings.key_prefix,
        (
            f"reconciling every {settings.reconcile_interval:g}s, grace "
            f"{settings.reconcile_grace:g}s"
            if settings.reconcile_enabled
            else "reconciliation off"
        ),
    )
    try:
        while not daemon.stop_event.wait(1.0):
            pass
    finally:
        daemon.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
