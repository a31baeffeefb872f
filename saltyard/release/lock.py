"""One release run per app at a time: a Consul lock held for the run, freed when the run ends or
dies.

The lock is the KV key ``saltyard/release/<app>/lock``, acquired with a Consul session that has a
TTL and no node health check: a thread renews it every third of the TTL while the run lives. A
run that ends releases the key and destroys the session; a run that dies (killed, the master
gone) stops renewing, and Consul invalidates the session within twice the TTL, which frees the
key (``Behavior: release``). No lock delay: the next run may start as soon as the key is free.

A second run while the key is held is refused at once, with who holds it and since when (the
key's value), before it changes anything.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from saltyard.clients.consul import ConsulClient, ConsulError

DEFAULT_TTL = 15.0


class LockHeld(Exception):
    """Another run holds the app's release lock; the message names it."""


def lock_key(app: str) -> str:
    return f"saltyard/release/{app}/lock"


class ReleaseLock:
    """``with ReleaseLock(client, "hello", what="release 1.4.0 (ref abc)"):`` runs the body
    with the lock held, or raises LockHeld."""

    def __init__(self, client: ConsulClient, app: str, *, what: str = "", ttl: float = DEFAULT_TTL):
        self.client = client
        self.app = app
        self.key = lock_key(app)
        self.ttl = ttl
        self.holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "what": what,
            "since": time.time(),
        }
        self.session_id: str | None = None
        self.lost = threading.Event()  # set when a renewal found the session gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ReleaseLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        answer = self.client.put_json(
            "/v1/session/create",
            {
                "Name": f"saltyard-release-{self.app}",
                "TTL": f"{self.ttl:g}s",
                "LockDelay": "0s",
                "Behavior": "release",
                # No node check: the lock lives exactly as long as this run renews it.
                "Checks": [],
            },
            f"creating the release session for {self.app}",
        )
        self.session_id = answer["ID"]
        acquired = self.client.call(
            lambda: self.client.api.kv.put(
                self.key, json.dumps(self.holder), acquire=self.session_id
            ),
            f"acquiring the release lock {self.key}",
        )
        if not acquired:
            self._destroy()
            raise LockHeld(self._held_message())
        self._thread = threading.Thread(
            target=self._renew, name=f"release-lock-{self.app}", daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.ttl)
        if self.session_id:
            try:
                self.client.call(
                    lambda: self.client.api.kv.put(self.key, None, release=self.session_id),
                    f"releasing the release lock {self.key}",
                )
            finally:
                self._destroy()

    def _destroy(self) -> None:
        session_id, self.session_id = self.session_id, None
        if session_id:
            self.client.call(
                lambda: self.client.api.session.destroy(session_id),
                f"destroying the release session for {self.app}",
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                found = self.client.call(
                    lambda: self.client.api.session.renew(self.session_id),
                    f"renewing the release session for {self.app}",
                )
            except ConsulError as exc:
                if exc.status == 404:
                    found = None
                else:
                    continue  # Consul away for a moment: the TTL leaves room to try again
            if not found:
                self.lost.set()
                return

    def _held_message(self) -> str:
        _, entry = self.client.call(
            lambda: self.client.api.kv.get(self.key), f"reading the release lock {self.key}"
        )
        try:
            holder = json.loads((entry or {}).get("Value") or b"{}")
        except ValueError:
            holder = {}
        since = holder.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if since else "?"
        return (
            f"app {self.app}: another release run holds {self.key} since {when} "
            f"({holder.get('what') or 'a release'} on {holder.get('host', '?')}, "
            f"pid {holder.get('pid', '?')}); it is freed when that run ends, or within "
            f"{2 * self.ttl:g} s of its death"
        )
