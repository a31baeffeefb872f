"""One active bridge among several: a Consul lock (session + KV acquire) held in a thread.

The session has a TTL and is renewed every third of it; ``Behavior: release`` frees the key
when the session dies, and the session's lock-delay keeps any other bridge from taking the key
for a while after that, so a bridge that was only slow (not dead) notices first. The key is
re-read on every renewal: a Consul restart that lost the data, or an operator deleting the
key, also ends the leadership. Writes are fenced by the session in ConsulStore.apply, so the
``active`` flag here is what stops the bridge early, not what keeps a deposed one correct.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from .consul_store import ConsulError, ConsulStore
from .metrics import Metrics

log = logging.getLogger("saltyard.bridge.leader")


class Backoff:
    """Exponential delays for retries: initial, doubled each time, capped."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0):
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class LeaderLock:
    def __init__(
        self,
        store: ConsulStore,
        key: str,
        *,
        ttl: float,
        lock_delay: float,
        metrics: Metrics,
        stop: threading.Event,
        on_change: Callable[[bool], None],
        max_backoff: float = 30.0,
    ):
        self.store = store
        self.key = key
        self.ttl = ttl
        self.lock_delay = lock_delay
        self.metrics = metrics
        self.stop = stop
        self.on_change = on_change
        self.max_backoff = max_backoff
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.session_id: str | None = None
        self._held = False
        self._confirmed = 0.0  # monotonic time the lock was last known to be ours
        self._state = threading.Lock()

    @property
    def renew_interval(self) -> float:
        return max(0.5, self.ttl / 3)

    @property
    def active(self) -> bool:
        """Held and confirmed within one TTL: past that, Consul may have expired the session
        without this bridge hearing about it."""
        with self._state:
            return self._held and time.monotonic() - self._confirmed < self.ttl

    def lost(self, reason: str) -> None:
        """Called when a fenced write was refused: stop being active at once."""
        self._set_held(False, reason)

    def _set_held(self, held: bool, reason: str) -> None:
        with self._state:
            changed = self._held != held
            self._held = held
            if held:
                self._confirmed = time.monotonic()
        if changed:
            self.metrics.inc("leader_changes")
            if held:
                log.info("became ACTIVE: holding %s (session %s)", self.key, self.session_id)
            else:
                log.warning("now PASSIVE, no more writes: %s", reason)
            self.on_change(held)

    def _confirm(self) -> None:
        with self._state:
            self._confirmed = time.monotonic()

    def run(self) -> None:
        backoff = Backoff(0.5, self.max_backoff)
        while not self.stop.is_set():
            try:
                self._step()
                backoff.reset()
            except ConsulError as exc:
                self.metrics.inc("errors", "consul")
                log.warning("leader lock: %s", exc)
                if "invalid session" in str(exc):
                    self.session_id = None  # Consul forgot it between renewal and acquire
                with self._state:
                    expired = self._held and time.monotonic() - self._confirmed >= self.ttl
                if expired:
                    self._set_held(False, f"lock not confirmed for {self.ttl:g}s ({exc})")
                self.stop.wait(backoff.next())
            except Exception:  # never let the lock thread die: log, count, retry
                self.metrics.inc("errors", "internal")
                log.exception("leader lock: unexpected error")
                self.stop.wait(backoff.next())

    def _step(self) -> None:
        if self.session_id is None:
            self.session_id = self.store.create_session(
                f"saltyard-bridge {self.identity}", self.ttl, self.lock_delay
            )
            log.info("created leader session %s (TTL %gs)", self.session_id, self.ttl)
        if self._held:
            self.stop.wait(self.renew_interval)
            if self.stop.is_set():
                return
            if not self.store.renew_session(self.session_id):
                self.session_id = None
                self._set_held(False, "the leader session is gone (expired or Consul lost it)")
                return
            _, holder = self.store.lock_holder(self.key)
            if holder != self.session_id:
                self._set_held(False, f"{self.key} is held by another session ({holder})")
                return
            self._confirm()
            return
        # Passive: keep the session alive (and learn if Consul lost it, as a restarted dev
        # agent does), then try the key.
        if not self.store.renew_session(self.session_id):
            log.info("leader session %s is gone; creating a new one", self.session_id)
            self.session_id = None
            return
        index, holder = self.store.lock_holder(self.key)
        if holder is not None and holder == self.session_id:
            self._set_held(True, "the key is still held by this session")
            return
        if holder is None:
            value = json.dumps({"holder": self.identity, "session": self.session_id})
            if self.store.acquire(self.key, self.session_id, value):
                self._set_held(True, "acquired")
                return
            # Free but refused: the lock-delay of a session that died holding it.
            self.stop.wait(min(1.0, max(0.1, self.lock_delay / 4)))
        else:
            # Passive: wait for the key to change, but wake in time to renew the session.
            self.store.lock_holder(self.key, index=index, wait=f"{self.renew_interval:g}s")

    def shutdown(self) -> None:
        """Give the lock up at once (a release, unlike a session expiry, has no lock-delay)."""
        session = self.session_id
        with self._state:
            self._held = False
        if session is None:
            return
        try:
            self.store.release(self.key, session)
            self.store.destroy_session(session)
            log.info("released %s and destroyed session %s", self.key, session)
        except ConsulError as exc:
            log.warning("could not release the lock on shutdown (it expires with the TTL): %s", exc)
