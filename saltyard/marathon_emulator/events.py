"""The event bus behind ``GET /v2/events`` (server-sent events)."""

from __future__ import annotations

import json
import queue
import threading

from .appdef import now_version


class Subscription:
    def __init__(self, bus: EventBus, event_types: set[str], remote: str):
        self.bus = bus
        self.event_types = event_types
        self.remote = remote
        # Bounded: a reader that stops reading is dropped instead of growing memory.
        self.queue: queue.Queue[dict | None] = queue.Queue(maxsize=10000)
        self.dropped = False

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def subscribe(self, event_types: set[str], remote: str) -> Subscription:
        sub = Subscription(self, event_types, remote)
        with self._lock:
            self._subs.append(sub)
        self.publish("event_stream_attached", remoteAddress=remote)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            else:
                return
        self.publish("event_stream_detached", remoteAddress=sub.remote)

    def publish(self, event_type: str, **fields) -> dict:
        event = {"eventType": event_type, "timestamp": now_version(), **fields}
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if not sub.wants(event_type):
                continue
            try:
                sub.queue.put_nowait(event)
            except queue.Full:
                sub.dropped = True
        return event

    def close_all(self) -> None:
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            try:
                sub.queue.put_nowait(None)
            except queue.Full:
                pass


def sse_frame(event: dict) -> bytes:
    return f"event: {event['eventType']}\ndata: {json.dumps(event)}\n\n".encode()
