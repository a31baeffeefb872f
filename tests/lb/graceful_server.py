"""A task for the lb tests that honours SIGTERM the way docs/lb.md asks applications to.

It answers ``GET /id`` with the task id (``MESOS_TASK_ID``) and anything else with 200 ``ok``,
on ``PORT0``. On SIGTERM it keeps serving for ``DRAIN_SECONDS`` (default 2): Mesos sends
TASK_KILLING and SIGTERM together, and the load balancers stop routing to the task only once the
bridge has taken it out of Consul and nginx has reloaded (a few hundred milliseconds). Then it
stops accepting, lets the requests in progress finish, and exits 0. ``DRAIN_SECONDS=0`` is an
application that does not honour SIGTERM: it exits at once, cutting the answers in progress.

``RESPONSE_SECONDS`` (default 0) makes ``/id`` take that long, the way a real answer does: the
header goes out at once and the body after the delay, so a task that dies meanwhile leaves a
response that had already started (which no proxy can retry).

One asyncio loop, no thread per connection, and a listen backlog of 1024: nginx opens a
connection per request, and a thread per connection (``http.server``) falls behind at a few
hundred requests/s on a busy 2-core machine, until its health checks time out.

Standard library only: it runs in the tests' Debian + python3 task image as
``python3 -c "$SALTYARD_TEST_SERVER"`` (tests/lb/lbstack.py passes this file's text in the app's
``env``), so the same app definition works on any agent without a file on it.
"""

import asyncio
import os
import signal

TASK_ID = os.environ.get("MESOS_TASK_ID", "unknown").encode()
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "2"))
RESPONSE_SECONDS = float(os.environ.get("RESPONSE_SECONDS", "0"))


def response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


async def handle(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        parts = head.split(b" ", 2)
        if len(parts) < 3:
            writer.write(response("400 Bad Request", b"bad request"))
        elif parts[1] == b"/id" and RESPONSE_SECONDS:
            whole = response("200 OK", TASK_ID)
            split = len(whole) - len(TASK_ID)
            writer.write(whole[:split])
            await writer.drain()
            await asyncio.sleep(RESPONSE_SECONDS)
            writer.write(whole[split:])
        else:
            writer.write(response("200 OK", TASK_ID if parts[1] == b"/id" else b"ok"))
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, port=int(os.environ["PORT0"]), backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_sigterm():
        if not DRAIN_SECONDS:
            os._exit(0)  # as an application that ignores the contract: gone at once
        print(f"SIGTERM: serving {DRAIN_SECONDS:g} s more, then exiting", flush=True)
        loop.call_later(DRAIN_SECONDS, stop.set)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    await stop.wait()
    server.close()  # nothing new is accepted
    await asyncio.sleep(0.5)  # the requests in progress finish (each is one short answer)
    print("stopped", flush=True)


asyncio.run(main())
