"""MarathonClient.events: the event stream (GET /v2/events, server-sent events) against the
emulator, and against small local servers for what the emulator does not do (split frames,
a stream that goes silent)."""

from __future__ import annotations

import queue
import socket
import threading
import time

import pytest
from marathon_helpers import docker_app, wait_until

from saltyard.clients.marathon import (
    MarathonClient,
    MarathonConnectionError,
    MarathonEvent,
    MarathonHTTPError,
)


class StreamReader:
    """Reads client.events(...) in a thread into a queue, recording when the stream opened."""

    def __init__(self, client: MarathonClient, types=(), read_timeout: float = 30.0):
        self.events: queue.Queue[MarathonEvent] = queue.Queue()
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._stop = False

        def run():
            try:
                for event in client.events(
                    types, read_timeout=read_timeout, on_open=self.opened.set
                ):
                    self.events.put(event)
                    if self._stop:
                        break
            except BaseException as exc:  # recorded for the test to assert on
                self.error = exc
            finally:
                self.ended.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float = 15) -> MarathonEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(event):
                return event
        raise AssertionError(f"no matching event within {timeout}s (error: {self.error!r})")

    def stop(self) -> None:
        self._stop = True


def test_events_follow_an_app_through_the_emulator(emulator):
    client = MarathonClient(emulator.url)
    reader = StreamReader(client)
    assert reader.opened.wait(10), reader.error
    attached = reader.wait_for(lambda e: e.type == "event_stream_attached")
    assert attached.data["eventType"] == "event_stream_attached"

    app = docker_app("/events/web")
    client.update_app(app["id"], app, force=True)
    try:
        posted = reader.wait_for(lambda e: e.type == "api_post_event")
        assert posted.data["appDefinition"]["id"] == "/events/web"
        reader.wait_for(lambda e: e.type == "deployment_info")
        running = reader.wait_for(
            lambda e: e.type == "status_update_event" and e.data["taskStatus"] == "TASK_RUNNING",
            40,
        )
        assert running.data["appId"] == "/events/web" and running.data["taskId"]
    finally:
        client.delete_app(app["id"], force=True)
    reader.wait_for(lambda e: e.type == "app_terminated_event" and e.data["appId"] == app["id"])
    reader.stop()


def test_event_type_filter_is_applied_by_marathon(emulator):
    client = MarathonClient(emulator.url)
    reader = StreamReader(client, ["deployment_info"])
    assert reader.opened.wait(10), reader.error
    app = docker_app("/events/filtered", instances=0)
    client.update_app(app["id"], app, force=True)
    try:
        event = reader.wait_for(lambda e: True)
        assert event.type == "deployment_info"
    finally:
        client.delete_app(app["id"], force=True)
    event = reader.wait_for(lambda e: True)
    assert event.type == "deployment_info"  # the delete's; no api_post/status events between
    reader.stop()


def test_the_iteration_ends_when_marathon_goes_away(make_emulator):
    emu = make_emulator("events-close", offset=2000).start()
    reader = StreamReader(MarathonClient(emu.url))
    assert reader.opened.wait(10), reader.error
    emu.stop()
    assert reader.ended.wait(15)
    # The emulator ends its streams on SIGTERM but may exit before the last chunk is out; the
    # clean end of a stream is covered by a local server below.
    assert reader.error is None or isinstance(reader.error, MarathonConnectionError)


def test_http_errors_are_raised_before_any_event(make_emulator):
    emu = make_emulator("events-auth", offset=2000)
    emu.env = {"MARATHON_HTTP_CREDENTIALS": "ops:events-test"}
    emu.auth = ("ops", "events-test")
    emu.start()
    opened = []
    with pytest.raises(MarathonHTTPError) as info:
        next(MarathonClient(emu.url).events(on_open=lambda: opened.append(1)))
    assert info.value.status == 401 and opened == []
    authed = MarathonClient(emu.url, auth=emu.auth).events()
    assert next(authed).type == "event_stream_attached"
    authed.close()


def test_connection_refused_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MarathonConnectionError):
        next(MarathonClient(f"http://127.0.0.1:{port}", timeout=2).events())


class RawServer:
    """One-connection HTTP server on 127.0.0.1 that answers with ``script``: a list of bytes
    to send (each flushed on its own) or floats (seconds to pause)."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.request = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script):
        conn, _ = self.sock.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            try:
                for item in script:
                    if isinstance(item, float):
                        self.done.wait(item)
                    else:
                        conn.sendall(item)
            except OSError:
                pass
        self.sock.close()

    def close(self):
        self.done.set()


def chunked(*pieces: bytes) -> list[bytes]:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return [head] + [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]


def test_frames_split_across_chunks_with_crlf_comments_and_multiline_data():
    server = RawServer(
        chunked(
            b": hello\r\n\r\n",
            b"event: status_update_event\r\nda",
            b'ta: {"taskId": "t1",\r\n',
            b'data: "taskStatus": "TASK_RUNNING"}\r\n',
            b"\r\n",
            b'event: custom\ndata: not json\n\ndata: {"eventType": "untyped_event"}\n\n',
            b"event: empty\n\n",
        )
    )
    events = list(MarathonClient(server.url).events(["status_update_event", "custom"]))
    assert events == [
        MarathonEvent("status_update_event", {"taskId": "t1", "taskStatus": "TASK_RUNNING"}),
        MarathonEvent("custom", {"raw": "not json"}),
        MarathonEvent("untyped_event", {"eventType": "untyped_event"}),
    ]
    assert b"event_type=status_update_event&event_type=custom" in server.request
    assert b"Accept: text/event-stream" in server.request


def test_a_silent_stream_is_a_connection_error_after_read_timeout():
    server = RawServer([*chunked(b": attached\n\n")[:2], 30.0])
    started = time.monotonic()
    try:
        with pytest.raises(MarathonConnectionError, match="event stream lost"):
            for _ in MarathonClient(server.url).events(read_timeout=0.5):
                pass
    finally:
        server.close()
    assert time.monotonic() - started < 5


def test_a_stream_closed_by_the_server_ends_the_iteration():
    server = RawServer(chunked(b'event: a\ndata: {"x": 1}\n\n'))
    assert [e.type for e in MarathonClient(server.url).events()] == ["a"]
    wait_until(lambda: not server.thread.is_alive(), 5, message="the server thread done")
