"""``python -m saltyard.bridge --marathon URL --consul URL --listen HOST:PORT ...``

Exit status: 0 after SIGTERM/SIGINT (lock released), 2 for a bad setting or a listen address
that cannot be bound. Marathon or Consul being away is not an exit reason: the bridge waits and
retries, so a supervisor never sees it crash-loop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from .daemon import Bridge
from .settings import settings_from_argv
from .status import make_status_server


def main(argv: list[str] | None = None) -> int:
    settings = settings_from_argv(argv, os.environ)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("saltyard.bridge")
    bridge = Bridge(settings)
    host, port = settings.listen
    try:
        server = make_status_server(bridge, host, port)
    except OSError as exc:
        print(f"python -m saltyard.bridge: --listen {host}:{port}: {exc}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        log.info("signal %d: stopping", signum)
        bridge.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    web = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="status", daemon=True
    )
    web.start()
    log.info(
        "bridge %s -> %s; status on http://%s:%d/health; resync every %gs; lock %s",
        settings.marathon_url,
        settings.consul_url,
        host,
        server.server_address[1],
        settings.resync_interval,
        settings.lock_key,
    )
    threads = bridge.start()
    try:
        while not bridge.stop_event.wait(1.0):
            pass
    finally:
        bridge.shutdown(threads)
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
