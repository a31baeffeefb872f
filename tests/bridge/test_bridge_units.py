"""The bridge's pure parts, without any service: what an app maps to in Consul, settings,
events to work, metrics text, host resolution."""

from __future__ import annotations

import socket

import pytest

from saltyard.bridge.consul_store import op_node_set, registration_ops
from saltyard.bridge.daemon import Bridge, HostResolver, _affected_apps
from saltyard.bridge.leader import Backoff
from saltyard.bridge.metrics import Metrics
from saltyard.bridge.registrations import (
    BAD_LABEL,
    HEALTHY,
    NO_ADDRESS,
    NO_ENV,
    NO_HEALTH_CHECKS,
    NO_PORT,
    UNHEALTHY,
    UNRESOLVED_HOST,
    Registration,
    desired_registrations,
    env_for,
    service_name_for,
    task_health,
    task_is_healthy,
)
from saltyard.bridge.settings import Settings, SettingsError, build_parser, parse_settings
from saltyard.clients.marathon import MarathonEvent

V1, V2, V3 = "2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"
ALIVE = [{"alive": True}]


def task(task_id: str, host: str = "agent-fat", *, version: str = V2, **extra) -> dict:
    return {
        "id": task_id,
        "host": host,
        "ports": [31001, 31002],
        "state": "TASK_RUNNING",
        "version": version,
        "healthCheckResults": ALIVE,
        **extra,
    }


def app(**extra) -> dict:
    body = {
        "id": "/shop/web",
        "version": V3,
        "versionInfo": {"lastConfigChangeAt": V2, "lastScalingAt": V3},
        "labels": {},
        "constraints": [["env", "CLUSTER", "fat"]],
        "healthChecks": [{"protocol": "HTTP"}],
        "tasks": [task("shop_web.1")],
    }
    body.update(extra)
    return body


def resolve(host: str) -> str | None:
    return {"agent-fat": "10.0.0.7", "agent-prod": "10.0.0.8"}.get(host)


def plan(**extra):
    return desired_registrations(app(**extra), resolve)


def test_a_healthy_task_maps_to_one_instance_with_the_documented_tags():
    (reg,) = plan().registrations
    assert (reg.service, reg.node, reg.address, reg.port) == (
        "shop-web",
        "marathon-agent-fat",
        "10.0.0.7",
        31001,
    )
    assert reg.service_id == "shop_web.1"
    assert set(reg.tags) == {
        "env:fat",
        f"version:{V2}",  # the configuration's version, not the last scaling
        "track:stable",
        "marathon-task:shop_web.1",
    }
    meta = dict(reg.meta)
    assert meta["saltyard-bridge"] == "owned" and meta["marathon-app"] == "/shop/web"
    assert reg.node_meta() == {
        "external-node": "true",
        "saltyard-bridge": "owned",
        "marathon-host": "agent-fat",
    }


def test_labels_override_name_env_version_track_and_port():
    labels = {
        "saltyard.service": "checkout",
        "saltyard.env": "uat",
        "saltyard.version": "v5.1.3",
        "saltyard.track": "canary",
        "saltyard.port-index": "1",
    }
    (reg,) = plan(labels=labels).registrations
    assert reg.service == "checkout" and reg.port == 31002
    assert {"env:uat", "version:v5.1.3", "track:canary"} <= set(reg.tags)


def test_a_task_of_an_older_configuration_keeps_its_own_version_tag():
    old = task("shop_web.0", version=V1)
    regs = plan(labels={"saltyard.version": "v2"}, tasks=[old, task("shop_web.1")]).registrations
    tags = {r.service_id: r.tags for r in regs}
    assert f"version:{V1}" in tags["shop_web.0"]
    assert "version:v2" in tags["shop_web.1"]


@pytest.mark.parametrize(
    "changes",
    [
        {"state": "TASK_STAGING"},
        {"state": "TASK_KILLING"},
        {"healthCheckResults": []},
        {"healthCheckResults": [{"alive": False}]},
        {"healthCheckResults": [{"alive": True}, {"alive": False}]},
    ],
)
def test_only_running_tasks_with_every_check_alive_are_registered(changes):
    assert plan(tasks=[task("t", **changes)]).registrations == []


def test_a_current_task_needs_a_result_for_every_check():
    checks = [{"protocol": "HTTP"}, {"protocol": "TCP"}]
    assert not task_is_healthy(task("t"), 2, current_config=True)
    assert task_is_healthy(task("t"), 2, current_config=False)  # mid-upgrade: its own checks
    assert plan(healthChecks=checks).registrations == []


def test_apps_without_health_checks_are_refused_unless_they_opt_in():
    refused = plan(healthChecks=[])
    assert refused.skip_reason == NO_HEALTH_CHECKS and refused.registrations == []
    assert "/shop/web has no health checks" in refused.skip_detail
    opted = plan(healthChecks=[], labels={"saltyard.register-without-health-checks": "true"})
    assert len(opted.registrations) == 1
    staging = plan(
        healthChecks=[],
        labels={"saltyard.register-without-health-checks": "true"},
        tasks=[task("t", state="TASK_STAGING", healthCheckResults=[])],
    )
    assert staging.registrations == []


@pytest.mark.parametrize(
    "labels",
    [
        {"saltyard.track": "blue"},
        {"saltyard.service": "Shop.Web"},
        {"saltyard.port-index": "first"},
    ],
)
def test_bad_labels_refuse_the_whole_app(labels):
    result = plan(labels=labels)
    assert result.skip_reason == BAD_LABEL and result.registrations == []


def test_environment_from_label_constraint_or_default():
    assert env_for({"labels": {"saltyard.env": "uat"}}, None) == "uat"
    assert env_for({"constraints": [["env", "CLUSTER", "prod"]]}, None) == "prod"
    assert env_for({"constraints": [["env", "IS", "fat"]]}, None) == "fat"
    assert env_for({"constraints": [["rack", "CLUSTER", "r1"]]}, "fat") == "fat"
    result = desired_registrations(app(constraints=[]), resolve)
    assert result.skip_reason == NO_ENV
    assert desired_registrations(app(constraints=[]), resolve, "uat").registrations


def test_task_problems_leave_out_single_tasks():
    result = plan(
        labels={"saltyard.port-index": "5"},
        tasks=[task("a")],
    )
    assert result.task_problems["a"][0] == NO_PORT
    result = plan(tasks=[task("b", host="nowhere"), task("c")])
    assert [r.service_id for r in result.registrations] == ["c"]
    assert result.task_problems["b"][0] == UNRESOLVED_HOST


def test_service_names_from_app_ids():
    assert service_name_for("/shop/web") == "shop-web"
    assert service_name_for("/a/b.c/d") == "a-b-c-d"
    assert service_name_for("web") == "web"


def test_registration_ops_put_each_node_before_its_services():
    regs = plan(tasks=[task("a"), task("b"), task("c", host="agent-prod")]).registrations
    ops = registration_ops(regs, {"marathon-agent-prod": "10.0.0.8"})
    kinds = [(next(iter(op)), op[next(iter(op))].get("Verb")) for op in ops]
    assert kinds == [("Node", "set"), ("Service", "set"), ("Service", "set"), ("Service", "set")]
    assert ops[0] == op_node_set("marathon-agent-fat", "10.0.0.7", regs[0].node_meta())


def test_host_resolution_prefers_the_map_and_refuses_loopback_from_dns():
    resolver = HostResolver({"agent-fat": "127.0.0.1"})
    assert resolver("agent-fat") == "127.0.0.1"  # an explicit address is taken as given
    assert resolver("192.0.2.5") == "192.0.2.5"
    assert resolver("localhost") is None  # nothing else could reach 127.0.0.1
    assert resolver("no-such-host.invalid") is None


def settings(*argv: str, **environ: str) -> Settings:
    return parse_settings(build_parser().parse_args(list(argv)), environ)


def test_settings_secrets_come_from_the_environment():
    s = settings(
        "--marathon",
        "http://127.0.0.1:8080",
        "--host-address",
        "agent-fat=10.0.0.7",
        MARATHON_HTTP_CREDENTIALS="ops:s3cret:x",
        CONSUL_HTTP_TOKEN="tok",
    )
    assert s.marathon_credentials == ("ops", "s3cret:x")
    assert s.consul_token == "tok"
    assert s.host_addresses == {"agent-fat": "10.0.0.7"}
    assert "s3cret" not in repr(s) and "tok" not in repr(s)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--marathon", "marathon:8080"], {}, "expected http(s)://HOST"),
        (["--marathon", "http://u:p@m:8080"], {}, "would show in `ps`"),
        (["--marathon", "http://m", "--consul", "http://c:99999"], {}, "--consul"),
        (["--marathon", "http://m", "--listen", "9158"], {}, "--listen"),
        (["--marathon", "http://m", "--resync-interval", "0"], {}, "--resync-interval"),
        (["--marathon", "http://m", "--session-ttl", "100000"], {}, "--session-ttl"),
        (["--marathon", "http://m", "--lock-delay", "-1"], {}, "--lock-delay"),
        (["--marathon", "http://m", "--host-address", "a=b"], {}, "AGENT_HOST=IPv4"),
        (["--marathon", "http://m"], {"MARATHON_HTTP_CREDENTIALS": "nocolon"}, "user:password"),
        (["--marathon", "http://m", "--log-level", "LOUD"], {}, "--log-level"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(argv, environ, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_settings(build_parser().parse_args(argv), environ)


def test_the_cli_exits_2_on_a_bad_setting(capsys):
    from saltyard.bridge.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--marathon", "ftp://m"])
    assert exit_info.value.code == 2
    assert "expected http(s)://HOST" in capsys.readouterr().err


def test_the_cli_exits_2_when_it_cannot_listen(capsys):
    from saltyard.bridge.__main__ import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["--marathon", "http://m", "--listen", f"127.0.0.1:{port}"]) == 2
    assert f"--listen 127.0.0.1:{port}" in capsys.readouterr().err


def test_events_become_work():
    bridge = Bridge(Settings(marathon_url="http://127.0.0.1:1"))
    bridge._full_due = False

    def work(kind: str, **data):
        bridge._on_event(MarathonEvent(kind, data))
        out = (bridge._full_due, set(bridge._dirty), set(bridge._gone))
        bridge._full_due, bridge._dirty, bridge._gone = False, set(), set()
        return out

    assert work("status_update_event", appId="/a", taskId="t1", taskStatus="TASK_KILLED") == (
        False,
        {"/a"},
        {"t1"},
    )
    assert work("status_update_event", appId="/a", taskId="t1", taskStatus="TASK_RUNNING") == (
        False,
        {"/a"},
        set(),
    )
    assert work("health_status_changed_event", appId="/a", instanceId="i1", alive=False) == (
        False,
        {"/a"},
        {"i1"},
    )
    assert work("app_terminated_event", appId="/gone") == (False, {"/gone"}, set())
    assert work("api_post_event", appDefinition={"id": "/new"}) == (False, {"/new"}, set())
    assert work("deployment_success", plan={"steps": []}) == (True, set(), set())
    assert bridge.metrics.get("events") == 6


def test_deployment_events_name_the_apps_of_their_steps_not_the_whole_group():
    data = {
        "plan": {
            "original": {"apps": [{"id": "/every"}, {"id": "/app"}]},
            "target": {"apps": [{"id": "/every"}, {"id": "/app"}]},
            "steps": [{"actions": [{"action": "ScaleApplication", "app": "/app"}]}],
        },
        "currentStep": {"actions": [{"action": "RestartApplication", "app": "/other"}]},
    }
    assert _affected_apps(data) == {"/app", "/other"}


def test_metrics_render_prometheus_text_and_json():
    metrics = Metrics()
    metrics.inc("registrations", amount=3)
    metrics.inc("errors", "consul")
    metrics.inc("skipped_apps", NO_HEALTH_CHECKS)
    text = metrics.prometheus({"active": ("help", 1.0), "apps_skipped": ("help", {"x": 2})})
    assert "saltyard_bridge_registrations_total 3\n" in text
    assert 'saltyard_bridge_errors_total{source="consul"} 1\n' in text
    assert 'saltyard_bridge_apps_skipped{reason="x"} 2\n' in text
    assert "# TYPE saltyard_bridge_active gauge" in text
    data = metrics.as_json()
    assert data["registrations"] == 3 and data["errors"] == {"consul": 1}
    assert data["deregistrations"] == 0
    with pytest.raises(KeyError):
        metrics.inc("nonsense")


def test_backoff_doubles_up_to_its_cap_and_resets():
    backoff = Backoff(0.5, 3)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3, 3]
    backoff.reset()
    assert backoff.next() == 0.5


def test_health_of_a_fresh_bridge_is_passive_and_not_stale():
    bridge = Bridge(Settings(marathon_url="http://127.0.0.1:1"))
    status, body = bridge.health()
    assert status == 200
    assert body["status"] == "passive" and body["active"] is False and body["last_sync"] is None
    assert set(body["counters"]) >= {"registrations", "deregistrations", "resyncs", "errors"}


def test_running_tasks_without_a_result_are_of_unknown_health_not_registered():
    fresh = task("shop_web.1", healthCheckResults=[])
    dead = task("shop_web.2", healthCheckResults=[{"alive": False}])
    half = task("shop_web.3", healthCheckResults=[{"alive": True}])
    two_checks = [{"protocol": "HTTP"}, {"protocol": "TCP"}]
    result = plan(tasks=[fresh, dead, half], healthChecks=two_checks)
    assert result.registrations == []
    assert result.health_unknown == {"shop_web.1", "shop_web.3"}  # not the dead one
    assert task_health(task("x", state="TASK_KILLING"), 1, True) == UNHEALTHY
    assert task_health(task("x"), 1, True) == HEALTHY


def test_unknown_health_grace_is_a_setting_of_0_or_more():
    args = build_parser().parse_args(["--marathon", "http://m:8080"])
    assert parse_settings(args, {}).unknown_health_grace == 90
    args = build_parser().parse_args(["--marathon", "http://m:8080", "--unknown-health-grace", "0"])
    assert parse_settings(args, {}).unknown_health_grace == 0
    args = build_parser().parse_args(["--marathon", "http://m:8080", "--unknown-health-grace=-1"])
    with pytest.raises(SettingsError, match="--unknown-health-grace -1: must be 0 or more"):
        parse_settings(args, {})


# ---------------------------------------------------------------------- container networks


def on_network(*mappings: dict, **extra) -> dict:
    """An app on the container network ``macvlan`` (Marathon 1.5+ shape) whose task has its
    own address and one host port (for the mappings that ask for one)."""
    return app(
        networks=[{"mode": "container", "name": "macvlan"}],
        container={"docker": {"image": "i"}, "portMappings": list(mappings)},
        tasks=[
            task(
                "shop_web.1",
                ports=[31005],
                ipAddresses=[{"ipAddress": "172.30.0.77", "protocol": "IPv4"}],
            )
        ],
        **extra,
    )


def test_a_container_network_task_registers_its_own_address_and_container_port():
    (reg,) = desired_registrations(on_network({"containerPort": 8080}), resolve).registrations
    assert (reg.address, reg.port) == ("172.30.0.77", 8080)
    # still on its agent host's node, whose address stays the host's
    assert (reg.node, reg.node_address) == ("marathon-agent-fat", "10.0.0.7")
    assert dict(reg.meta)["marathon-network"] == "macvlan"
    assert dict(reg.meta)["marathon-host"] == "agent-fat"
    # the same task on BRIDGE networking: the agent's address and the host port, as before
    (bridged,) = plan(tasks=[task("shop_web.1", ports=[31005])]).registrations
    assert (bridged.address, bridged.port, bridged.node_address) == ("10.0.0.7", 31005, "10.0.0.7")
    assert "marathon-network" not in dict(bridged.meta)


def test_the_port_index_picks_the_mapping_and_a_zero_container_port_its_host_port():
    mappings = (
        {"containerPort": 8080},  # no host port
        {"containerPort": 9090, "hostPort": 0},  # the task's ports[0]
        {"containerPort": 0, "hostPort": 0},  # container port = its host port, ports[1]
    )
    base = on_network(*mappings)
    base["tasks"][0]["ports"] = [31005, 31006]

    def port(index: str) -> int:
        labels = {"saltyard.port-index": index}
        (reg,) = desired_registrations({**base, "labels": labels}, resolve).registrations
        assert reg.address == "172.30.0.77"
        return reg.port

    assert [port("0"), port("1"), port("2")] == [8080, 9090, 31006]


@pytest.mark.parametrize(
    ("change", "reason", "said"),
    [
        ({"labels": {"saltyard.port-index": "1"}}, NO_PORT, "1 port mapping(s), no port index 1"),
        ({"mapping": {"containerPort": 0}}, NO_PORT, "containerPort 0 and no hostPort"),
        ({"ipAddresses": []}, NO_ADDRESS, "no IPv4 address in Marathon's ipAddresses yet"),
        (
            {"ipAddresses": [{"ipAddress": "fd00::7", "protocol": "IPv6"}]},
            NO_ADDRESS,
            "no IPv4 address",
        ),
        ({"host": "nowhere"}, UNRESOLVED_HOST, "agent host 'nowhere'"),
    ],
)
def test_container_network_tasks_left_out_say_why(change, reason, said):
    body = on_network(change.get("mapping", {"containerPort": 8080}))
    body["labels"] = change.get("labels", {})
    for key in ("ipAddresses", "host"):
        if key in change:
            body["tasks"][0][key] = change[key]
    result = desired_registrations(body, resolve)
    assert result.registrations == []
    (problem,) = result.task_problems.values()
    assert problem[0] == reason and said in problem[1], problem


def test_a_staging_container_network_task_is_not_registered():
    body = on_network({"containerPort": 8080})
    body["tasks"][0].update(state="TASK_STAGING", ipAddresses=[], healthCheckResults=[])
    result = desired_registrations(body, resolve)
    assert result.registrations == [] and result.skip_reason is None


def test_the_pre_15_user_network_shape_counts_as_a_container_network():
    body = app(
        container={
            "docker": {"image": "i", "network": "USER", "portMappings": [{"containerPort": 80}]}
        },
        tasks=[task("t", ipAddresses=[{"ipAddress": "10.9.0.4", "protocol": "IPv4"}])],
    )
    (reg,) = desired_registrations(body, resolve).registrations
    assert (reg.address, reg.port) == ("10.9.0.4", 80)
    assert "marathon-network" not in dict(reg.meta)  # unnamed


def test_a_node_keeps_its_host_address_whatever_its_services_have():
    regs = desired_registrations(on_network({"containerPort": 8080}), resolve).registrations
    regs += plan(tasks=[task("b")]).registrations  # a host-port task on the same agent
    ops = registration_ops(regs, {})
    nodes = [op["Node"]["Node"] for op in ops if "Node" in op]
    assert nodes == [
        {"Node": "marathon-agent-fat", "Address": "10.0.0.7", "Meta": nodes[0]["Meta"]}
    ]
    # read back from the catalog (service address, node address), it is the same registration
    reg = regs[0]
    back = Registration.from_catalog(reg.node, regs[0].service_body(), "10.0.0.7")
    assert back == reg
