"""saltyard.localcluster.vegeta refuses a load it must not send, naming the bad value, before
it starts anything."""

from __future__ import annotations

import pytest

from saltyard.localcluster import vegeta


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/id", "http://172.30.0.50/", "https://[::1]:8443/"]
)
def test_loopback_and_cluster_targets_are_accepted(url):
    assert vegeta.check_target(url)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://8.8.8.8/", "8.8.8.8"),
        ("http://10.1.2.3/", "10.1.2.3"),  # private, but no host of the local cluster
        ("http://192.168.1.1/", "192.168.1.1"),
        ("http://example.org/", "example.org"),
        ("http://0.0.0.0:80/", "0.0.0.0"),
        ("ftp://127.0.0.1/", "ftp://127.0.0.1/"),
    ],
)
def test_other_targets_are_refused_by_name(url, named):
    with pytest.raises(vegeta.LoadError, match=named.replace(".", r"\.")):
        vegeta.check_target(url)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate": 0}, "rate 0"),
        ({"rate": vegeta.MAX_RATE + 1}, f"rate {vegeta.MAX_RATE + 1}"),
        ({"rate": 2.5}, "rate 2.5"),
        ({"duration": 0}, "duration 0"),
        ({"duration": vegeta.MAX_DURATION + 1}, f"duration {vegeta.MAX_DURATION + 1}"),
        ({"timeout": 0}, "timeout 0"),
    ],
)
def test_unbounded_loads_are_refused_before_vegeta_starts(kwargs, named, monkeypatch):
    # A missing binary would raise FileNotFoundError: the bounds are checked before that.
    monkeypatch.setattr(vegeta, "BINARY", vegeta.Path("/nonexistent/vegeta"))
    with pytest.raises(vegeta.LoadError, match=named):
        vegeta.Attack("http://127.0.0.1:1/", **kwargs)


def test_go_timestamps_keep_their_nanoseconds():
    a = vegeta._seconds("2026-12-02T19:05:48.778835815Z")
    b = vegeta._seconds("2026-12-02T19:05:48.779835815Z")
    assert round(b - a, 6) == 0.001
    assert vegeta._seconds("2026-12-02T20:05:48+01:00") == vegeta._seconds("2026-12-02T19:05:48Z")


def test_an_attack_stopped_early_keeps_what_it_sent(tmp_path):
    """stop() ends the attack at once (a release that ends before the load's duration), and
    result() decodes every request sent until then, with the failures' times."""
    import http.server
    import threading
    import time

    from tests.support.components import require_file

    require_file(vegeta.BINARY, "vegeta", "run scripts/build-vegeta.sh")

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the handler's name in http.server
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        began = time.time()
        attack = vegeta.Attack(
            f"http://127.0.0.1:{server.server_port}/fail", rate=50, duration=60, workdir=tmp_path
        )
        time.sleep(2)
        attack.stop()
        result = attack.result()
        ended = time.time()
    finally:
        server.shutdown()
    assert ended - began < 20, "stop() did not end the attack"
    assert 50 <= result.requests <= 50 * (ended - began) + 5, result.summary()
    assert result.failed == result.requests and result.status_codes == {503: result.requests}
    assert all(began - 1 <= f["time"] <= ended for f in result.failures), result.failures[:3]
