"""The logging role, rendered by Salt on the host for log1 and agent-fat of the shipped inventory
with the local site's pillar, and its pillar checks (saltyard.applog.flume_conf): bad pillar is
refused at render time with the value named, before anything changes."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from saltyard.applog import flume_conf
from tests.state_render import REPO, RenderRefused, StateRenderer, state_args

DEFAULTS = yaml.safe_load((REPO / "states" / "logging" / "defaults.yaml").read_text())["logging"]
PILLAR = {
    "pki": {"ca": "CA", "node": {"cert": "CERT", "key": "KEY"}, "docker_clients_ca": "DCA"},
    "consul": {"encrypt": "not-a-key", "acl": {"tokens": {"agent": "a"}}},
}


def params(**flume) -> dict:
    p = copy.deepcopy(DEFAULTS)
    p["flume"]["source"] = "salt://artifacts/flume.tar.gz"
    for key, value in flume.items():
        p["flume"][key] = value
    return p


@pytest.fixture(scope="module")
def log1(tmp_path_factory) -> StateRenderer:
    return StateRenderer(tmp_path_factory.mktemp("render-log1"), "log1", pillar=PILLAR)


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> StateRenderer:
    return StateRenderer(tmp_path_factory.mktemp("render-agent"), "agent-fat", pillar=PILLAR)


def test_defaults_have_no_problem():
    assert flume_conf.problems(params()) == []


@pytest.mark.parametrize(
    "change,named",
    [
        ({"sink": {"type": "s3"}}, "pillar logging:flume:sink:type is 's3'"),
        (
            {"channel": {"capacity": 100, "transaction_capacity": 1000}},
            "pillar logging:flume:channel:capacity 100 is below its transaction_capacity 1000",
        ),
        (
            {"channel": {"capacity": "lots", "transaction_capacity": 10}},
            "pillar logging:flume:channel:capacity is 'lots'",
        ),
        (
            {"syslog_sources": [{"name": "app_tcp", "protocol": "tcp", "port": 2514}]},
            "pillar logging:flume:syslog_sources[0]:port is 2514/tcp, already used by "
            "pillar logging:relp_port",
        ),
        (
            {
                "syslog_sources": [
                    {"name": "a", "protocol": "udp", "port": 5140},
                    {"name": "b", "protocol": "udp", "port": 5140},
                ]
            },
            "syslog_sources[1]:port is 5140/udp, already used by "
            "pillar logging:flume:syslog_sources[0]:port",
        ),
        (
            {"syslog_sources": [{"name": "a", "protocol": "sctp", "port": 5140}]},
            "syslog_sources[0]:protocol is 'sctp'",
        ),
        ({"monitoring_port": 70000}, "pillar logging:flume:monitoring_port is 70000"),
        ({"sink": {"type": "files", "directory": "logs"}}, "sink:directory is 'logs'"),
        ({"sink": {"type": "kafka", "topic": "t"}}, "sink:bootstrap_servers is empty"),
    ],
)
def test_bad_pillar_is_named(change, named):
    found = flume_conf.problems(params(**change))
    assert any(named in problem for problem in found), found


@pytest.mark.parametrize(
    "key,value,named",
    [
        ("spool_keep_hours", 0, "pillar logging:spool_keep_hours is 0"),
        ("queue_max_disk", "lots", "pillar logging:queue_max_disk is 'lots'"),
    ],
)
def test_bad_node_side_pillar_is_named(key, value, named):
    p = params()
    p[key] = value
    assert any(named in problem for problem in flume_conf.problems(p))


def test_the_same_port_on_udp_and_tcp_is_two_sources():
    sources = [
        {"name": "app_udp", "protocol": "udp", "port": 5140},
        {"name": "app_tcp", "protocol": "tcp", "port": 5140},
    ]
    assert flume_conf.problems(params(syslog_sources=sources)) == []
    text = flume_conf.render("log1", params(syslog_sources=sources))
    assert "log1.sources = spool app_udp app_tcp" in text
    assert "log1.sources.app_udp.type = syslogudp" in text
    assert "log1.sources.app_tcp.type = syslogtcp" in text


def test_the_spool_regex_survives_javas_properties_escapes():
    text = flume_conf.render("log1", params())
    (line,) = [
        x for x in text.splitlines() if x.startswith("log1.sources.spool.interceptors.fields.regex")
    ]
    # Java's Properties turns "\\" into "\": Flume's regex is ^(\S+) (\S+) ...
    value = line.split(" = ", 1)[1].replace("\\\\", "\\")
    assert re.match(value, "2026-12-06T05:00:00+00:00 prod hello agent-prod t1 msg").groups() == (
        "2026-12-06T05:00:00+00:00",
        "prod",
        "hello",
        "agent-prod",
        "t1",
    )


def test_log_node_flume_config_is_checked_by_flume_before_it_replaces_the_live_one(log1):
    rendered = log1.show_sls("logging")
    config = state_args(rendered, "logging-flume-config")
    assert config["name"] == "/etc/saltyard-flume/flume.conf"
    assert "io.saltyard.flume.CheckConfig -n log1 -f" in config["check_cmd"]
    assert config["check_cmd"].startswith("/usr/sbin/runuser -u flume -- ")
    assert "log1.sinks.out.type = io.saltyard.flume.GroupedFileSink" in config["contents"]
    # The service restarts on a checked change only; Flume's own reload is off.
    unit = state_args(rendered, "logging-flume-unit")["contents"]
    assert "--no-reload-conf -n log1" in unit
    watch = [dict(w) for w in state_args(rendered, "saltyard-flume")["watch"]]
    assert {"file": "logging-flume-config"} in watch
    rsyslog = state_args(rendered, "logging-rsyslog-config")
    assert rsyslog["check_cmd"] == (
        "/usr/local/sbin/saltyard-rsyslog-check /etc/rsyslog.d/40-saltyard-log-node.conf"
    )


@pytest.mark.parametrize(
    "pillar,named",
    [
        ({"flume": {"sink": {"type": "nosuch"}}}, "pillar logging:flume:sink:type is 'nosuch'"),
        (
            {"flume": {"channel": {"capacity": 10, "transaction_capacity": 100}}},
            "capacity 10 is below its transaction_capacity 100",
        ),
        ({"flume": {"sinc": {}}}, "sinc"),
    ],
)
def test_bad_pillar_refuses_the_render(log1, pillar, named):
    with pytest.raises(RenderRefused) as refused:
        log1.show_sls("logging", pillar={"logging": pillar})
    assert named in str(refused.value)


def test_docker_nodes_log_to_the_socket_systemd_holds(agent):
    rendered = agent.show_sls("docker")
    opts = state_args(rendered, "docker-daemon-config")["dataset"]["log-opts"]
    assert opts["syslog-address"] == "unixgram:///run/saltyard/container-log.sock"
    assert opts["mode"] == "non-blocking"
    assert opts["env"] == "MESOS_TASK_ID,MARATHON_APP_ID,MARATHON_APP_LABEL_SALTYARD_SERVICE"
    assert opts["tag"].startswith("{{$e := .ExtraAttributes nil}}saltyard/")
    socket = state_args(rendered, "logging-container-socket-unit")["contents"]
    assert "ListenDatagram=/run/saltyard/container-log.sock" in socket
    assert "Service=rsyslog.service" in socket
    forward = state_args(rendered, "logging-forward-config")
    assert forward["context"]["log_node"] == "172.30.0.60"  # log1, from the inventory
    assert forward["context"]["env"] == "fat"
    engine = [dict(r) for r in state_args(rendered, "docker-engine")["require"]]
    assert {"service": "logging-container-socket"} in engine
