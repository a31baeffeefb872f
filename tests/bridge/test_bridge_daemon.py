"""The bridge daemon end to end: real Consul (ACLs on, the bridge's own policy), the Marathon
emulator running tasks as containers, bridges as subprocesses."""

from __future__ import annotations

import requests


def node_names(consul_agent) -> set[str]:
    return {n["Node"] for n in consul_agent.admin().catalog.nodes()[1]}


def test_healthy_tasks_follow_scale_kill_and_delete(make_bridge, apps, marathon, consul_agent, h):
    bridge = make_bridge("flow", "saltyard/bridge/flow").start()
    bridge.wait_active()
    app = apps(h.web_app("/shop/web", 2, labels={"saltyard.version": "v5.1.3"}))

    def converged(count: int):
        def check():
            expected = h.expected_view(marathon, app["id"], "shop-web")
            actual = h.owned_view(consul_agent, app["id"])
            return len(expected) == count and actual == expected and actual

        return check

    instances = h.wait_until(converged(2), 40, message="2 instances in Consul")
    one = consul_agent.instances(app["id"])[next(iter(instances))]
    task_id = next(iter(instances))
    assert one["service"] == "shop-web"
    assert one["node"] == "marathon-agent-fat"
    assert one["address"] == "127.0.0.1"
    assert one["tags"] == sorted(
        ["env:fat", "version:v5.1.3", "track:stable", f"marathon-task:{task_id}"]
    )
    assert one["node_meta"]["external-node"] == "true"
    assert one["node_meta"]["saltyard-bridge"] == "owned"

    marathon.scale_app(app["id"], 3, force=True)
    h.wait_until(converged(3), 40, message="3 instances after scaling up")

    marathon.scale_app(app["id"], 1, force=True)
    h.wait_until(converged(1), 40, message="1 instance after scaling down")

    (victim,) = h.owned_view(consul_agent, app["id"])
    marathon.kill_task(app["id"], victim)
    h.wait_until(
        lambda: victim not in h.owned_view(consul_agent, app["id"]),
        15,
        message="the killed task out of Consul",
    )
    h.wait_until(converged(1), 40, message="the replacement registered")

    resyncs = bridge.metrics()["saltyard_bridge_resyncs_total"]
    marathon.delete_app(app["id"], force=True)
    h.wait_until(
        lambda: not consul_agent.instances(app["id"]), 20, message="no instance after delete"
    )
    # The node has nothing left on it: the next full resync deletes it too.
    h.wait_until(
        lambda: "marathon-agent-fat" not in node_names(consul_agent),
        20,
        message="the empty external node deleted",
    )

    metrics = bridge.metrics()
    assert metrics["saltyard_bridge_resyncs_total"] > resyncs  # periodic resyncs go on
    assert metrics["saltyard_bridge_registrations_total"] >= 4
    assert metrics["saltyard_bridge_deregistrations_total"] >= 4
    assert metrics["saltyard_bridge_active"] == 1
    health = requests.get(bridge.url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["active"] is True


def resynced_twice(bridge, h) -> None:
    """Wait for two more full resyncs: whatever the bridge would do, it has done by then."""
    start = bridge.metrics()["saltyard_bridge_resyncs_total"]
    h.wait_until(
        lambda: bridge.metrics()["saltyard_bridge_resyncs_total"] >= start + 2,
        15,
        message="two more full resyncs",
    )


def test_labels_and_apps_without_health_checks(make_bridge, apps, marathon, consul_agent, h):
    bridge = make_bridge("labels", "saltyard/bridge/labels").start()
    bridge.wait_active()
    unchecked = apps(h.web_app("/plain/nocheck", healthChecks=[]))
    opted_in = apps(
        h.web_app(
            "/plain/optin",
            healthChecks=[],
            labels={"saltyard.register-without-health-checks": "true"},
        )
    )
    checkout = h.web_app(
        "/labels/checkout",
        env="prod",
        labels={
            "saltyard.service": "checkout",
            "saltyard.track": "canary",
            "saltyard.env": "uat",
            "saltyard.port-index": "1",
        },
    )
    checkout["container"]["portMappings"].append({"containerPort": 0, "hostPort": 0})
    canary = apps(checkout)
    bad = apps(h.web_app("/labels/bad", labels={"saltyard.track": "blue"}))
    no_env = apps(h.web_app("/labels/noenv", constraints=[]))

    registered = h.wait_until(
        lambda: len(consul_agent.instances(opted_in["id"])) == 1
        and len(consul_agent.instances(canary["id"])) == 1
        and {**consul_agent.instances(opted_in["id"]), **consul_agent.instances(canary["id"])},
        40,
        message="the opted-in app and the labelled app registered",
    )
    for app_id in (unchecked["id"], bad["id"], no_env["id"]):
        h.wait_until(
            lambda app_id=app_id: any(
                t["state"] == "TASK_RUNNING" for t in marathon.list_tasks(app_id)
            ),
            40,
            message=f"{app_id} running",
        )
    h.wait_until(
        lambda: h.healthy_tasks(marathon, bad["id"]) and h.healthy_tasks(marathon, no_env["id"]),
        40,
        message="the refused apps' tasks healthy",
    )
    resynced_twice(bridge, h)
    for app_id in (unchecked["id"], bad["id"], no_env["id"]):
        assert consul_agent.instances(app_id) == {}, app_id

    app = marathon.get_app(opted_in["id"])
    (optin_id,) = consul_agent.instances(opted_in["id"])
    assert registered[optin_id]["service"] == "plain-optin"
    assert f"version:{app['versionInfo']['lastConfigChangeAt']}" in registered[optin_id]["tags"]
    assert "env:fat" in registered[optin_id]["tags"]

    (task,) = marathon.list_tasks(canary["id"])
    entry = registered[task["id"]]
    assert entry["service"] == "checkout"
    assert entry["node"] == "marathon-agent-prod"
    assert entry["port"] == task["ports"][1]
    assert {"track:canary", "env:uat"} <= set(entry["tags"])

    metrics = bridge.metrics()
    assert metrics['saltyard_bridge_skipped_apps_total{reason="no_health_checks"}'] >= 1
    assert metrics['saltyard_bridge_apps_skipped{reason="no_health_checks"}'] >= 1
    assert metrics['saltyard_bridge_skipped_apps_total{reason="bad_label"}'] >= 1
    assert metrics['saltyard_bridge_skipped_apps_total{reason="no_env"}'] >= 1
    log = bridge.log()
    assert "app /plain/nocheck has no health checks: not registered" in log
    assert "label saltyard.track='blue'" in log
    # Logged once per app, not on every resync.
    assert log.count("app /plain/nocheck has no health checks") == 1
    health = bridge.health()
    assert health["skipped_apps"]["no_health_checks"] >= 1


def test_services_the_bridge_does_not_own_are_never_touched(
    make_bridge, apps, marathon, consul_agent, h
):
    admin = consul_agent.admin()
    bridge = make_bridge("foreign", "saltyard/bridge/foreign").start()
    bridge.wait_active()
    app = apps(h.web_app("/own/web"))
    h.wait_until(lambda: consul_agent.instances(app["id"]), 40, message="the app registered")

    # On the bridge's own node, without the ownership mark; on a marathon-* node it does not
    # own; on another external node; and through the local agent.
    consul_agent.catalog(
        "register",
        {
            "Node": "marathon-agent-fat",
            "Address": "127.0.0.1",
            "Service": {"ID": "intruder-1", "Service": "intruder", "Port": 1},
            "SkipNodeUpdate": True,
        },
    )
    consul_agent.catalog(
        "register",
        {
            "Node": "marathon-stranger",
            "Address": "127.0.0.2",
            "Service": {"ID": "stranger-1", "Service": "stranger", "Port": 2},
        },
    )
    consul_agent.catalog(
        "register",
        {
            "Node": "lb-external",
            "Address": "127.0.0.3",
            "NodeMeta": {"external-node": "true"},
            "Service": {"ID": "ext-1", "Service": "ext", "Meta": {"saltyard-bridge": "x"}},
        },
    )
    admin.agent.service.register("local-web", service_id="local-web-1", port=4)
    try:
        marathon.delete_app(app["id"], force=True)
        h.wait_until(
            lambda: not consul_agent.instances(app["id"]), 20, message="the app deregistered"
        )
        resynced_twice(bridge, h)

        def services_of(node):
            return set(((admin.catalog.node(node) or (None, {}))[1] or {}).get("Services") or {})

        assert services_of("marathon-agent-fat") == {"intruder-1"}  # node kept for it
        assert services_of("marathon-stranger") == {"stranger-1"}
        assert services_of("lb-external") == {"ext-1"}
        assert "local-web-1" in admin.agent.services()
    finally:
        consul_agent.catalog(
            "deregister", {"Node": "marathon-agent-fat", "ServiceID": "intruder-1"}
        )
        consul_agent.catalog("deregister", {"Node": "marathon-stranger"})
        consul_agent.catalog("deregister", {"Node": "lb-external"})
        admin.agent.service.deregister("local-web-1")


def test_restart_after_sigkill_mid_change_leaves_no_stale_entry(
    make_bridge, apps, marathon, consul_agent, h
):
    first = make_bridge("before", "saltyard/bridge/crash").start()
    first.wait_active()
    app = apps(h.web_app("/crash/web", 3))
    h.wait_until(
        lambda: len(h.expected_view(marathon, app["id"], "crash-web")) == 3
        and h.owned_view(consul_agent, app["id"])
        == h.expected_view(marathon, app["id"], "crash-web"),
        40,
        message="3 instances registered",
    )
    marathon.scale_app(app["id"], 1, force=True)
    first.kill()  # mid-change: the scale-down deployment has just started
    h.wait_until(
        lambda: len(marathon.list_tasks(app["id"])) == 1 and not marathon.list_deployments(),
        40,
        message="the scale-down done in Marathon",
    )
    # While no bridge runs, the survivor dies too and Marathon replaces it.
    (survivor,) = (t["id"] for t in marathon.list_tasks(app["id"]))
    marathon.kill_task(app["id"], survivor)
    (replacement,) = h.wait_until(
        lambda: set(h.healthy_tasks(marathon, app["id"])) - {survivor},
        40,
        message="the replacement healthy",
    )
    stale = consul_agent.instances(app["id"])
    assert survivor in stale and replacement not in stale  # nobody has cleaned up

    second = make_bridge("after", "saltyard/bridge/crash").start()
    second.wait_active(30)  # the dead session expires first (up to 2 x TTL), then lock-delay
    h.wait_until(
        lambda: h.owned_view(consul_agent, app["id"])
        == h.expected_view(marathon, app["id"], "crash-web"),
        20,
        message="Consul converged on Marathon's one task",
    )
    assert set(consul_agent.instances(app["id"])) == {replacement}
    metrics = second.metrics()
    assert metrics["saltyard_bridge_deregistrations_total"] >= 1
    assert metrics["saltyard_bridge_registrations_total"] >= 1


def test_second_bridge_stays_passive_and_takes_over(make_bridge, apps, marathon, consul_agent, h):
    first = make_bridge("one", "saltyard/bridge/ha").start()
    first.wait_active()
    second = make_bridge("two", "saltyard/bridge/ha").start()
    app = apps(h.web_app("/ha/web"))
    h.wait_until(lambda: len(h.owned_view(consul_agent, app["id"])) == 1, 40, message="registered")
    resynced_twice(first, h)
    passive = second.health()
    assert passive["active"] is False and passive["status"] == "passive"
    metrics = second.metrics()
    assert metrics["saltyard_bridge_active"] == 0
    assert metrics["saltyard_bridge_registrations_total"] == 0
    assert metrics["saltyard_bridge_resyncs_total"] == 0

    first.kill()
    second.wait_active(30)
    marathon.scale_app(app["id"], 2, force=True)
    h.wait_until(
        lambda: len(h.expected_view(marathon, app["id"], "ha-web")) == 2
        and h.owned_view(consul_agent, app["id"]) == h.expected_view(marathon, app["id"], "ha-web"),
        40,
        message="the second bridge registers the new instance",
    )
    assert second.metrics()["saltyard_bridge_registrations_total"] >= 1
    assert "became ACTIVE" in second.log()


def test_marathon_away_then_back(make_bridge, apps, emulator, marathon, consul_agent, h):
    bridge = make_bridge("away", "saltyard/bridge/away").start()
    bridge.wait_active()
    app = apps(h.web_app("/away/web"))
    before = h.wait_until(
        lambda: len(h.owned_view(consul_agent, app["id"])) == 1
        and h.owned_view(consul_agent, app["id"]),
        40,
        message="registered",
    )
    emulator.stop()  # tasks keep running; the emulator adopts them when it is back
    try:
        h.wait_until(
            lambda: bridge.metrics().get('saltyard_bridge_errors_total{source="marathon"}', 0) >= 2,
            20,
            message="the bridge noticing Marathon is away",
        )
        assert bridge.health()["marathon"]["ok"] is False
        # Marathon being away is no reason to take instances out of Consul.
        assert h.owned_view(consul_agent, app["id"]) == before
    finally:
        emulator.start()
    h.wait_until(
        lambda: bridge.health()["marathon"]["ok"] and bridge.health()["event_stream_connected"],
        30,
        message="the bridge back on Marathon",
    )
    assert bridge.metrics()["saltyard_bridge_stream_reconnects_total"] >= 1
    marathon.scale_app(app["id"], 2, force=True)
    h.wait_until(
        lambda: len(h.owned_view(consul_agent, app["id"])) == 2,
        40,
        message="changes followed again",
    )


def test_consul_restart_loses_data_and_the_bridge_registers_again(
    make_bridge, apps, marathon, consul_agent, h
):
    bridge = make_bridge("restart", "saltyard/bridge/restart").start()
    bridge.wait_active()
    app = apps(h.web_app("/cr/web", 2))
    h.wait_until(lambda: len(h.owned_view(consul_agent, app["id"])) == 2, 40, message="registered")
    consul_agent.restart()  # a dev agent keeps nothing: catalog, KV, sessions all gone
    h.wait_until(
        lambda: h.owned_view(consul_agent, app["id"])
        == h.expected_view(marathon, app["id"], "cr-web")
        and len(h.owned_view(consul_agent, app["id"])) == 2,
        30,
        message="re-registered after the Consul restart",
    )
    bridge.wait_active(20)
    metrics = bridge.metrics()
    assert metrics["saltyard_bridge_registrations_total"] >= 4  # both instances, twice
    assert metrics["saltyard_bridge_leader_changes_total"] >= 3  # active, passive, active
    assert bridge.proc.poll() is None
