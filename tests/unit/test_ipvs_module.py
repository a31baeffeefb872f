"""The ipvs execution module's parsing and checks, and the ipvs_service state's plan, on ipvsadm
output captured from the VM (Debian 12's kernel and ipvsadm 1.31; tests/unit/data/ipvsadm_*).

The same module and state run against the real ipvsadm in tests/vm/test_vm.py.
"""

from __future__ import annotations

import re

import pytest
from salt.exceptions import SaltInvocationError


def must_not_run(cmd, **_):
    raise AssertionError(f"ipvsadm ran although the input was bad: {cmd}")


@pytest.fixture
def ipvs(load):
    return load("_modules", "ipvs", salt={"cmd.run_all": must_not_run})


@pytest.fixture
def table(ipvs, data):
    return ipvs.parse_save(data("ipvsadm_save_mixed.txt"))


def test_parse_save_of_every_kind_of_service(table):
    by_key = {(s["protocol"], s["address"], s["port"], s["fwmark"]): s for s in table}
    registry = by_key[("tcp", "172.31.97.200", 5000, None)]
    assert registry["scheduler"] == "wlc" and registry["persistent"] is None
    assert registry["servers"] == [
        {"address": "172.31.97.31", "port": 5000, "forwarding": "dr", "weight": 1},
        # ipvsadm was asked for port 5001 with -g: direct routing keeps the service's port.
        {"address": "172.31.97.32", "port": 5000, "forwarding": "dr", "weight": 0},
        {"address": "172.31.97.33", "port": 5000, "forwarding": "dr", "weight": 70000},
    ]
    tunnel = by_key[("tcp", "172.31.97.202", 80, None)]
    assert tunnel["scheduler"] == "sh" and tunnel["persistent"] == 360
    assert tunnel["servers"] == [
        {"address": "172.31.97.51", "port": 80, "forwarding": "tunnel", "weight": 65535}
    ]
    assert by_key[("tcp", "172.31.97.203", 8080, None)]["servers"] == []
    dns = by_key[("udp", "172.31.97.201", 53, None)]
    assert dns["persistent"] == 60
    assert dns["servers"] == [
        {"address": "172.31.97.41", "port": 5353, "forwarding": "nat", "weight": 3}
    ]
    v6 = by_key[("tcp", "fd00::200", 443, None)]
    assert v6["scheduler"] == "wrr"
    assert v6["servers"] == [{"address": "fd00::31", "port": 443, "forwarding": "dr", "weight": 2}]
    mark = by_key[("fwmark", None, None, 7)]
    assert mark["scheduler"] == "lc" and mark["servers"][0]["address"] == "172.31.97.61"
    assert len(table) == 6


def test_parse_save_agrees_with_the_listing(table, data):
    """`ipvsadm -Ln --exact`, captured from the same table, lists the same servers."""
    listing = data("ipvsadm_list_exact_mixed.txt")
    forward = {"Route": "dr", "Masq": "nat", "Tunnel": "tunnel"}
    listed = sorted(
        (m["addr"].strip("[]"), int(m["port"]), forward[m["fwd"]], int(m["weight"]))
        for m in re.finditer(
            r"->\s+(?P<addr>\[[^\]]+\]|[\d.]+):(?P<port>\d+)\s+(?P<fwd>\w+)\s+(?P<weight>\d+)",
            listing,
        )
    )
    parsed = sorted(
        (s["address"], s["port"], s["forwarding"], s["weight"])
        for svc in table
        for s in svc["servers"]
    )
    assert parsed == listed


def test_parse_save_of_an_empty_table(ipvs):
    assert ipvs.parse_save("") == []


@pytest.mark.parametrize(
    "line",
    [
        "-X -t 1.2.3.4:80",
        "-a -t 1.2.3.4:80 -r 10.0.0.1:80 -g",  # a server before its service
        "-A -s wlc",
        "-A -t 1.2.3.4:80 -s",
    ],
)
def test_parse_save_names_a_line_it_does_not_understand(ipvs, line):
    with pytest.raises(Exception, match="line 1"):
        ipvs.parse_save(line + "\n")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (("add_service", "172.30.0.999", 5000), "invalid service address '172.30.0.999'"),
        (("add_service", "172.30.0.200", 0), "invalid service port 0"),
        (("add_service", "172.30.0.200", "http"), "invalid service port 'http'"),
        (("add_service", "172.30.0.200", 5000, "sctp"), "invalid protocol 'sctp'"),
        (("add_service", "172.30.0.200", 5000, "tcp", "fastest"), "invalid scheduler 'fastest'"),
        (("edit_service", "172.30.0.200", 70000), "invalid service port 70000"),
        (("delete_service", "vip", 5000), "invalid service address 'vip'"),
        (
            ("add_server", "172.30.0.200", 5000, "registry1"),
            "invalid real server address 'registry1'",
        ),
        (
            ("add_server", "172.30.0.200", 5000, "172.30.0.31", None, "tcp", "masq"),
            "invalid forwarding method 'masq'",
        ),
        (
            ("add_server", "172.30.0.200", 5000, "172.30.0.31", None, "tcp", "dr", -1),
            "invalid weight -1",
        ),
        (
            ("edit_server", "172.30.0.200", 5000, "172.30.0.31", None, "tcp", "dr", "heavy"),
            "invalid weight 'heavy'",
        ),
        (
            ("add_server", "172.30.0.200", 5000, "172.30.0.31", 5001, "tcp", "dr"),
            "real server 172.30.0.31: port 5001 differs from the service's 5000",
        ),
        (
            ("delete_server", "172.30.0.200", 5000, "172.30.0.31", 0),
            "invalid port of real server 172.30.0.31 0",
        ),
    ],
)
def test_bad_values_are_named_before_ipvsadm_runs(ipvs, call, message):
    name, *args = call
    with pytest.raises(SaltInvocationError) as err:
        getattr(ipvs, name)(*args)
    assert message in str(err.value)


def test_checks_normalise(ipvs):
    assert ipvs.check_address("[fd00::0200]") == "fd00::200"
    assert ipvs.check_port("5000") == 5000
    assert ipvs.check_protocol("TCP") == "tcp"
    assert ipvs.check_weight(0) == 0
    assert ipvs.check_server({"address": "172.30.0.41", "port": 8080, "forwarding": "nat"}, 80) == {
        "address": "172.30.0.41",
        "port": 8080,
        "weight": 1,
        "forwarding": "nat",
    }
    with pytest.raises(SaltInvocationError, match=r"unknown keys \['wieght'\]"):
        ipvs.check_server({"address": "172.30.0.41", "wieght": 2}, 80)
    with pytest.raises(SaltInvocationError, match="invalid weight True"):
        ipvs.check_weight(True)


# --- the state's plan, on the captured table ----------------------------------------------------


@pytest.fixture
def state(load, ipvs, table):
    """ipvs_service with the real checks, reading the captured table; test mode."""
    salt = {name: getattr(ipvs, name) for name in dir(ipvs) if name.startswith("check_")}
    salt = {f"ipvs.{name}": func for name, func in salt.items()}

    def service(address, port, protocol="tcp"):
        for svc in table:
            if (svc["protocol"], svc["address"], svc["port"]) == (protocol, address, int(port)):
                return svc
        return None

    salt["ipvs.service"] = service
    salt["ipvs.services"] = lambda: table
    return load("_states", "ipvs_service", salt=salt, test=True)


def test_test_mode_predicts_added_changed_and_removed_servers(state):
    ret = state.present(
        "registry-vip",
        "172.31.97.200",
        5000,
        scheduler="wlc",
        servers=[
            {"address": "172.31.97.31"},  # as it is
            {"address": "172.31.97.32", "weight": 1},  # weight 0 -> 1
            {"address": "172.31.97.34"},  # new; .33 goes
        ],
    )
    assert ret["result"] is None
    assert ret["changes"] == {
        "servers": {
            "added": [{"address": "172.31.97.34", "port": 5000, "weight": 1, "forwarding": "dr"}],
            "changed": [
                {
                    "server": "172.31.97.32:5000",
                    "old": {"forwarding": "dr", "weight": 0},
                    "new": {"forwarding": "dr", "weight": 1},
                }
            ],
            "removed": [
                {"address": "172.31.97.33", "port": 5000, "forwarding": "dr", "weight": 70000}
            ],
        }
    }
    assert "real servers added: 172.31.97.34:5000" in ret["comment"]


def test_test_mode_predicts_a_new_service_and_a_scheduler_change(state):
    new = state.present("x", "172.31.97.210", 80, servers=[{"address": "172.31.97.31"}])
    assert new["result"] is None
    assert new["changes"]["service"] == {"old": None, "new": {"scheduler": "wlc"}}
    assert [s["address"] for s in new["changes"]["servers"]["added"]] == ["172.31.97.31"]
    same = state.present(
        "dns",
        "172.31.97.201",
        53,
        protocol="udp",
        scheduler="wrr",
        servers=[{"address": "172.31.97.41", "port": 5353, "weight": 3, "forwarding": "nat"}],
    )
    assert same["changes"] == {"service": {"old": {"scheduler": "rr"}, "new": {"scheduler": "wrr"}}}


def test_nothing_to_do_is_true_without_changes(state):
    ret = state.present(
        "v6",
        "fd00::200",
        443,
        scheduler="wrr",
        servers=[{"address": "fd00::31", "weight": 2}],
    )
    assert ret["result"] is True and ret["changes"] == {}


def test_bad_input_fails_naming_it(state):
    ret = state.present("x", "172.31.97.200", 5000, servers=[{"address": "172.31.97.31"}] * 2)
    assert (
        ret["result"] is False and "real server 172.31.97.31:5000 is listed twice" in ret["comment"]
    )
    ret = state.present("x", "172.31.97.200", 5000, servers=[{"address": "r1", "weight": 1}])
    assert ret["result"] is False and "invalid real server address 'r1'" in ret["comment"]
    ret = state.present("x", "172.31.97.200", 5000, scheduler="random")
    assert ret["result"] is False and "invalid scheduler 'random'" in ret["comment"]


def test_absent_in_test_mode(state):
    ret = state.absent("old", "172.31.97.203", 8080)
    assert ret["result"] is None and ret["changes"]["new"] is None
    assert state.absent("gone", "172.31.97.250", 8080) == {
        "name": "gone",
        "changes": {},
        "result": True,
        "comment": "virtual service tcp 172.31.97.250:8080 is absent",
    }


# ------------------------------------------------- wait_for_server (orch.registry_gc's gate)


@pytest.fixture
def health_server():
    """A real HTTP server on loopback whose /debug/health answers the status set in `status`."""
    import http.server
    import threading

    status = {"code": 503}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's name)
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield status, f"http://127.0.0.1:{server.server_port}/debug/health"
    server.shutdown()


def _table_changing(*tables: str):
    """ipvsadm -S -n answers each table in turn, then keeps answering the last."""
    answers = list(tables)

    def run_all(cmd, **_):
        assert cmd[1:] == ["-S", "-n"], cmd
        text = answers.pop(0) if len(answers) > 1 else answers[0]
        return {"retcode": 0, "stdout": text, "stderr": ""}

    return run_all


SERVICE = "-A -t 172.30.0.200:5000 -s wlc\n"
IN_SERVICE = SERVICE + "-a -t 172.30.0.200:5000 -r 172.30.0.31:5000 -g -w 1\n"
WEIGHT_0 = SERVICE + "-a -t 172.30.0.200:5000 -r 172.30.0.31:5000 -g -w 0\n"


def test_wait_for_server_returns_once_healthy_and_in_the_table(load, health_server):
    status, url = health_server
    status["code"] = 200
    ipvs = load(
        "_modules", "ipvs", salt={"cmd.run_all": _table_changing(SERVICE, WEIGHT_0, IN_SERVICE)}
    )
    found = ipvs.wait_for_server(
        "172.30.0.200", 5000, "172.30.0.31", health_url=url, timeout=10, interval=0.05
    )
    assert found["server"] == {
        "address": "172.30.0.31",
        "port": 5000,
        "forwarding": "dr",
        "weight": 1,
    }


@pytest.mark.parametrize(
    ("code", "table", "reason"),
    [
        (503, IN_SERVICE, "its health URL http://127.0.0.1:{port}/debug/health answered 503"),
        (200, SERVICE, "it is not in the director's table"),
        (200, WEIGHT_0, "its weight in the director's table is 0"),
        (200, "", "the director has no virtual service 172.30.0.200:5000"),
    ],
)
def test_wait_for_server_names_what_is_missing_at_the_timeout(
    load, health_server, code, table, reason
):
    status, url = health_server
    status["code"] = code
    ipvs = load("_modules", "ipvs", salt={"cmd.run_all": _table_changing(table)})
    port = url.split(":")[2].split("/")[0]
    with pytest.raises(Exception) as raised:
        ipvs.wait_for_server(
            "172.30.0.200", 5000, "172.30.0.31", health_url=url, timeout=0.3, interval=0.05
        )
    assert str(raised.value) == (
        "real server 172.30.0.31:5000 of 172.30.0.200:5000 is not in service after 0.3 s: "
        + reason.format(port=port)
    )


def test_wait_for_server_refuses_bad_input_before_reading_the_table(ipvs):
    with pytest.raises(SaltInvocationError, match="'soon'"):
        ipvs.wait_for_server("172.30.0.200", 5000, "172.30.0.31", timeout="soon")
    with pytest.raises(SaltInvocationError, match="not-an-ip"):
        ipvs.wait_for_server("172.30.0.200", 5000, "not-an-ip")
