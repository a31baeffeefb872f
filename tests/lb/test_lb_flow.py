"""The lb role end to end on the host: an app deployed through Marathon (the emulator) is
served by nginx as <app>.<env>.<domain>, following scaling and kills, through the bridge, Consul
and the real consul-template, with the template, configuration and apply script of states/lb."""

from __future__ import annotations

import functools
from pathlib import Path

import requests

from tests.lb import lbstack
from tests.support.wait import wait_until as support_wait_until

# A request through nginx while it reloads may fail: that is "not yet", not a failure.
wait_until = functools.partial(support_wait_until, ignore=(requests.RequestException,))


def healthy_ids(stack, app_id: str) -> set[str]:
    return set(stack.helpers.healthy_tasks(stack.marathon, app_id))


def answering(stack, host: str, requests_count: int, strict: bool = True) -> set[str] | None:
    """The task ids that answer ``GET /id`` through nginx over a few round-robin requests.
    A failed request fails the test, or (``strict=False``, while waiting for a change to land:
    the live file is swapped in a moment before nginx reloads) gives None."""
    seen = set()
    for _ in range(requests_count):
        response = stack.nginx.get(host, "/id")
        if not strict and response.status_code != 200:
            return None
        assert response.status_code == 200, (response.status_code, response.text)
        seen.add(response.text)
    return seen


def test_unknown_host_gets_404(stack):
    assert stack.nginx.get("nothing.fat.saltyard.test").status_code == 404
    assert stack.nginx.get("example.org").status_code == 404
    # No Host at all (HTTP/1.0) goes to the default server too.
    assert requests.get(stack.nginx.url, timeout=5).status_code == 404


def test_app_follows_scaling_and_kills(stack, apps):
    app_id = "/lbtest/web"
    host = stack.host("lbtest-web")
    apps(app_id, 1, env="fat")

    first = wait_until(
        lambda: (r := stack.nginx.get(host, "/id")).status_code == 200 and r.text,
        60,
        message=f"{host} served through nginx",
    )
    assert first in healthy_ids(stack, app_id)
    # Only the app's environment has a virtual host.
    assert stack.nginx.get(stack.host("lbtest-web", "prod"), "/id").status_code == 404

    def served_by(count: int):
        def check():
            ids = healthy_ids(stack, app_id)
            servers = stack.nginx.upstream_servers("lbtest-web")
            return (
                len(ids) == count
                and len(servers) == count
                and answering(stack, host, 4 * count, strict=False) == ids
                and stack.nginx.settled()
                and ids
            )

        def settled():
            ids = wait_until(check, 60, message=f"{count} instances behind nginx")
            # Once there, every request is answered, by exactly those tasks.
            assert answering(stack, host, 6 * count) == ids
            return ids

        return settled

    stack.marathon.scale_app(app_id, 3, force=True)
    three = served_by(3)()

    stack.marathon.scale_app(app_id, 1, force=True)
    (survivor,) = served_by(1)()
    assert survivor in three

    # A killed task leaves the upstream; Marathon's replacement takes its place.
    port = stack.helpers.healthy_tasks(stack.marathon, app_id)[survivor]["ports"][0]
    stack.marathon.kill_task(app_id, survivor)
    wait_until(
        lambda: f"127.0.0.1:{port}" not in stack.nginx.upstream_servers("lbtest-web"),
        20,
        message="the killed task out of the upstream",
    )
    (replacement,) = served_by(1)()
    assert replacement != survivor


def test_refused_render_keeps_last_good_configuration(stack, apps):
    app_id = "/lbtest/keep"
    host = stack.host("lbtest-keep")
    apps(app_id, 1, env="fat")
    wait_until(lambda: stack.nginx.get(host, "/id").status_code == 200, 60, message=host)
    live = Path(stack.lb["paths"]["live"])
    staged = Path(stack.lb["paths"]["staged"])
    good = live.read_text()
    refusals = len(stack.syslog.matching("render refused by nginx -t"))

    # An instance registered without a port (someone else's mistake in the catalog): the
    # template renders it, and nginx -t refuses "invalid port in upstream".
    broken = {
        "Node": "lbtest-foreign",
        "Address": "127.0.0.1",
        "Service": {"ID": "lbtest-broken-1", "Service": "lbtest-broken", "Tags": ["env:fat"]},
    }
    stack.consul.catalog("register", broken)
    try:
        line = wait_until(
            lambda: stack.syslog.matching("render refused by nginx -t")[refusals:],
            20,
            message="the refusal logged (syslog tag saltyard-lb)",
        )[0]
        assert "saltyard-lb" in line and "<27>" in line[:4]  # daemon.err
        assert "invalid port" in line, line
        assert "lbtest-broken" in staged.read_text()
        assert live.read_text() == good
        assert "render refused by nginx -t" in stack.consul_template.log()
        # The last good configuration keeps serving, and consul-template keeps watching.
        assert stack.nginx.get(host, "/id").status_code == 200
        assert stack.nginx.get(stack.host("lbtest-broken")).status_code == 404
        assert stack.consul_template.proc.poll() is None
    finally:
        stack.consul.catalog("deregister", {"Node": "lbtest-foreign"})

    # The next render is good again and goes in.
    wait_until(
        lambda: "lbtest-broken" not in staged.read_text()
        and live.read_text() == staged.read_text(),
        20,
        message="the next good render applied",
    )
    assert stack.nginx.get(host, "/id").status_code == 200


def test_an_instance_that_failed_once_is_tried_again(stack):
    """nginx's default max_fails=1 would take an instance out for 10 s after one failed attempt;
    once every instance of an upstream has failed once, it answers 502 "no live upstreams" to
    every request although one instance serves again. The template's max_fails=0 keeps trying
    what the catalog lists. Two instances registered by hand on loopback: one that never
    answers a SYN (a listening socket whose accept queue is full: a connect timeout, as a task
    whose container is gone behind Docker's DNAT), one refused at first, then serving."""
    import http.server
    import socket
    import threading

    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue: further SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(blackhole.getsockname())
        fillers.append(filler)
    later_port = lbstack.free_port()
    node = "lbtest-flaky-node"
    for n, port in enumerate((blackhole.getsockname()[1], later_port)):
        stack.consul.catalog(
            "register",
            {
                "Node": node,
                "Address": "127.0.0.1",
                "Service": {
                    "ID": f"lbtest-flaky-{n}",
                    "Service": "lbtest-flaky",
                    "Tags": ["env:fat"],
                    "Port": port,
                },
            },
        )
    host = stack.host("lbtest-flaky")
    server = None
    try:
        # Until nginx has reloaded with the upstream, the host is unknown (404); then both
        # instances fail: a connect timeout (1 s) and a refusal. nginx answers with the failure of
        # the last instance it tried, and round robin decides which one that is: 502 after the
        # refusal, 504 after the timeout (CI's stop 26 saw the latter).
        status = wait_until(
            lambda: len(stack.nginx.upstream_servers("lbtest-flaky")) == 2
            and (code := stack.nginx.get(host, "/id", timeout=15).status_code) != 404
            and code,
            30,
            message="both instances in the upstream",
        )
        assert status in (502, 504)

        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", later_port), Ok)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        # The second instance serves now, and gets every request at once (not after 10 s).
        for _ in range(3):
            response = stack.nginx.get(host, "/id", timeout=15)
            assert (response.status_code, response.text) == (200, "ok"), stack.logs()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        stack.consul.catalog("deregister", {"Node": node})
        for sock in (blackhole, *fillers):
            sock.close()
