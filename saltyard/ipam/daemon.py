"""The IPAM daemon: the plugin server on its unix socket and the reconciliation loop, over one
allocation store in Consul.

Threads: the socket server (one more thread per Docker connection) and the reconciler. Neither
holds state that matters: every allocation is in Consul, so a restart loses nothing (only the
reconciler's clock of how long an allocation has been missing starts again, which delays a
free and never hastens one).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from saltyard.clients.consul import ConsulClient

from .counters import Counters
from .errors import IpamError
from .plugin import IpamPlugin
from .reconcile import Reconciler
from .settings import Settings
from .store import AllocationStore
from .unix_http import UnixHTTPServer, make_plugin_server

log = logging.getLogger("saltyard.ipam")


class IpamDaemon:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.counters = Counters()

        def consul() -> ConsulClient:
            return ConsulClient(
                settings.consul_address, settings.consul_token, timeout=settings.consul_timeout
            )

        self.store = AllocationStore(consul, settings.key_prefix)
        self.plugin = IpamPlugin(settings, self.store, self.counters, status=self.status)
        self.reconciler = (
            Reconciler(settings, self.store, self.counters) if settings.reconcile_enabled else None
        )
        self.stop_event = threading.Event()
        self.server: UnixHTTPServer | None = None
        self.threads: list[threading.Thread] = []
        self.started = time.time()

    def bind(self) -> UnixHTTPServer:
        """Bind the plugin socket; raises OSError (a live plugin on it, no permission)."""
        self.server = make_plugin_server(self.plugin, self.settings.socket_path)
        return self.server

    def start(self) -> None:
        if self.server is None:
            self.bind()
        self.threads = [
            threading.Thread(
                target=self.server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="plugin",
                daemon=True,
            )
        ]
        if self.reconciler is not None:
            self.threads.append(
                threading.Thread(
                    target=self.reconciler.run,
                    args=(self.stop_event,),
                    name="reconcile",
                    daemon=True,
                )
            )
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def shutdown(self) -> None:
        """After stop(): close the socket (and remove it: a socket nobody serves would make the
        engine wait for it), let a reconciliation pass in progress finish."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            Path(self.settings.socket_path).unlink(missing_ok=True)
        for thread in self.threads:
            if thread.name == "reconcile":
                thread.join(timeout=self.settings.consul_timeout + self.settings.docker_timeout)

    def status(self) -> dict[str, Any]:
        """The answer of ``/Saltyard.Status``: where it serves, the pools (with how many
        addresses Consul holds allocated in each, None when Consul does not answer), the
        counters and the reconciliation's state."""
        pools = []
        for pool in self.settings.pools:
            entry = pool.as_dict()
            try:
                entry["allocated"] = len(self.store.taken(pool.name))
            except IpamError:
                entry["allocated"] = None
            pools.append(entry)
        return {
            "plugin": self.settings.plugin_name,
            "socket": self.settings.socket_path,
            "host": self.settings.host,
            "consul": self.settings.consul_address,
            "key_prefix": self.settings.key_prefix,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "pools": pools,
            "counters": self.counters.as_json(),
            "reconcile": self.reconciler.status() if self.reconciler else {"enabled": False},
        }
