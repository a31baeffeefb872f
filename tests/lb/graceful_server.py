"""A task for the lb tests that honours SIGTERM the way docs/lb.md asks applications to.

It serves ``GET /id`` (the task id, ``MESOS_TASK_ID``) and anything else with 200 ``ok`` on
``PORT0``. On SIGTERM it keeps serving for ``DRAIN_SECONDS`` (default 2): Mesos sends
TASK_KILLING and SIGTERM together, and the load balancers stop routing to the task only once the
bridge has taken it out of Consul and nginx has reloaded (a few hundred milliseconds). Then it
stops accepting, lets the requests in progress finish, and exits 0.

Standard library only: it runs in the tests' Debian + python3 task image as
``python3 -c "$SALTYARD_TEST_SERVER"`` (tests/lb/lbstack.py passes this file's text in the app's
``env``), so the same app definition works on any agent without a file on it.
"""

import http.server
import os
import signal
import sys
import threading
import time

TASK_ID = os.environ.get("MESOS_TASK_ID", "unknown").encode()
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "2"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        body = TASK_ID if self.path == "/id" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass  # one line per request would flood the container log under load


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in progress
    block_on_close = True
    request_queue_size = 128  # a burst of connections after a reload is not refused


def main():
    server = Server(("", int(os.environ["PORT0"])), Handler)

    def drain_then_stop():
        time.sleep(DRAIN_SECONDS)
        server.shutdown()  # serve_forever returns; nothing new is accepted

    def on_sigterm(signum, frame):
        print(f"SIGTERM: serving {DRAIN_SECONDS:g} s more, then exiting", flush=True)
        threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)
    sys.exit(0)


main()
