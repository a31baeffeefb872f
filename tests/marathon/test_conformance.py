"""The PUBLIC ``marathon`` client library drives the emulator; assertions cover what the API
returns and the real containers behind it."""

from __future__ import annotations

import queue
import threading

import pytest
import requests
from marathon import MarathonApp, MarathonClient
from marathon.exceptions import ConflictError, NotFoundError
from marathon.models.app import MarathonHealthCheck, MarathonUpgradeStrategy
from marathon.models.container import (
    MarathonContainer,
    MarathonContainerPortMapping,
    MarathonDockerContainer,
)
from marathon_helpers import LABEL, TASK_IMAGE, containers_of, labels_of, state_of, wait_until


def web_app(instances: int = 1, env: dict | None = None, **extra) -> MarathonApp:
    return MarathonApp(
        cmd="exec python3 -m http.server $PORT0",
        instances=instances,
        cpus=0.1,
        mem=64,
        env=env or {},
        container=MarathonContainer(
            docker=MarathonDockerContainer(image=TASK_IMAGE, network="BRIDGE"),
            port_mappings=[MarathonContainerPortMapping(container_port=0, host_port=0)],
        ),
        health_checks=[
            MarathonHealthCheck(
                protocol="HTTP",
                path="/",
                port_index=0,
                interval_seconds=1,
                timeout_seconds=3,  # slack for a loaded 2-core machine
                grace_period_seconds=20,
                max_consecutive_failures=3,
            )
        ],
        **extra,
    )


@pytest.fixture(scope="module")
def client(emulator) -> MarathonClient:
    return MarathonClient(emulator.url, timeout=10)


def settled(client: MarathonClient, app_id: str, timeout: float = 40):
    """Wait until no deployment holds the app and every instance is healthy."""

    def done():
        if any(app_id in d.affected_apps for d in client.list_deployments()):
            return False
        app = client.get_app(app_id)
        return app if app.tasks_healthy == app.instances == app.tasks_running else False

    return wait_until(done, timeout, message=f"{app_id} to settle")


def test_ping_info_leader(client, emulator):
    assert client.ping() == b"pong"
    info = client.get_info()
    assert info.name == "marathon" and info.elected is True
    assert client.get_leader() == {"leader": f"127.0.0.1:{emulator.port}"}


def test_create_get_list(client, emulator, docker_client):
    created = client.create_app(
        "/conf/web", web_app(2, labels={"team": "a"}, constraints=[["hostname", "UNIQUE"]])
    )
    assert created.id == "/conf/web"
    assert created.version and created.deployments
    app = settled(client, "/conf/web")
    assert app.version_info.last_config_change_at is not None
    assert {t.host for t in app.tasks} == {"agent-fat", "agent-prod"}  # UNIQUE hostname
    for task in app.tasks:
        assert task.state == "TASK_RUNNING" and task.health_check_results[0].alive
        assert task.service_ports == [app.container.port_mappings[0].service_port]
        # the task's host port really serves (published on loopback only)
        assert requests.get(f"http://127.0.0.1:{task.ports[0]}/", timeout=5).status_code == 200
    assert [a.id for a in client.list_apps(app_id="/conf/web")] == ["/conf/web"]
    assert client.list_apps(label="team==a")[0].id == "/conf/web"
    containers = containers_of(docker_client, emulator.cluster, "/conf/web")
    assert sorted(labels_of(c)[f"{LABEL}.task-id"] for c in containers) == sorted(
        t.id for t in app.tasks
    )
    assert all(state_of(c) == "running" for c in containers)
    with pytest.raises(ConflictError):
        client.create_app("/conf/web", web_app())


def test_update_rolls_to_new_version(client, emulator, docker_client):
    client.create_app(
        "/conf/roll",
        web_app(
            2,
            upgrade_strategy=MarathonUpgradeStrategy(
                minimum_health_capacity=0.5, maximum_over_capacity=0
            ),
        ),
    )
    before = settled(client, "/conf/roll")
    old_ids = {t.id for t in before.tasks}
    result = client.update_app("/conf/roll", web_app(2, env={"COLOUR": "blue"}))
    assert set(result) == {"deploymentId", "version"}
    deployments = client.list_deployments()
    mine = [d for d in deployments if d.id == result["deploymentId"]]
    assert mine and mine[0].affected_apps == ["/conf/roll"]
    assert mine[0].current_actions[0].action == "RestartApplication"
    # mHC 0.5 / mOC 0 with 2 instances: never more than 2 containers, never fewer than 1 running
    seen_max = 0

    def rolled():
        nonlocal seen_max
        running = [
            c
            for c in containers_of(docker_client, emulator.cluster, "/conf/roll")
            if state_of(c) == "running"
        ]
        seen_max = max(seen_max, len(running))
        app = client.get_app("/conf/roll")
        return not app.deployments and app.tasks_healthy == 2 and app

    app = wait_until(rolled, 60, interval=0.2, message="rolling upgrade")
    assert seen_max <= 2
    assert app.version == result["version"] and app.env == {"COLOUR": "blue"}
    assert {t.version for t in app.tasks} == {result["version"]}
    assert not old_ids & {t.id for t in app.tasks}
    assert len(containers_of(docker_client, emulator.cluster, "/conf/roll")) == 2
    assert len(client.list_versions("/conf/roll")) == 2
    assert client.get_version("/conf/roll", before.version).env == {}


def test_scale_up_and_down(client, emulator, docker_client):
    client.create_app("/conf/scale", web_app(1))
    first = settled(client, "/conf/scale")
    client.scale_app("/conf/scale", instances=3)
    app = settled(client, "/conf/scale")
    assert app.instances == 3 and len(app.tasks) == 3
    # scaling changes version and lastScalingAt, not lastConfigChangeAt: no task was replaced
    assert app.version_info.last_config_change_at == first.version_info.last_config_change_at
    assert app.version_info.last_scaling_at > first.version_info.last_scaling_at
    assert first.tasks[0].id in {t.id for t in app.tasks}
    client.scale_app("/conf/scale", delta=-2)
    app = settled(client, "/conf/scale")
    assert app.instances == 1 and len(app.tasks) == 1
    wait_until(
        lambda: len(containers_of(docker_client, emulator.cluster, "/conf/scale")) == 1,
        10,
        message="scaled-down containers to go",
    )


def test_kill_task_with_and_without_scale(client, emulator, docker_client):
    client.create_app("/conf/kill", web_app(2))
    app = settled(client, "/conf/kill")
    victim = app.tasks[0].id
    killed = client.kill_task("/conf/kill", victim)
    assert killed.id == victim
    # without scale: a replacement starts, instances stay 2
    wait_until(
        lambda: (a := settled(client, "/conf/kill"))
        and victim not in {t.id for t in a.tasks}
        and a,
        40,
        message="replacement task",
    )
    app = client.get_app("/conf/kill")
    assert app.instances == 2 and len(app.tasks) == 2
    # with scale: instances drop to 1 and the container goes away
    victim = app.tasks[1].id
    result = client.kill_task("/conf/kill", victim, scale=True)
    assert "deploymentId" in result
    app = settled(client, "/conf/kill")
    assert app.instances == 1 and [t.id for t in app.tasks] != [victim]
    wait_until(
        lambda: [
            labels_of(c)[f"{LABEL}.task-id"]
            for c in containers_of(docker_client, emulator.cluster, "/conf/kill")
        ]
        == [app.tasks[0].id],
        10,
        message="only the surviving container",
    )
    all_tasks = client.list_tasks()
    assert app.tasks[0].id in {t.id for t in all_tasks}


def test_delete_and_events(client, emulator, docker_client):
    events: queue.Queue = queue.Queue()
    wanted = [
        "api_post_event",
        "deployment_info",
        "deployment_success",
        "status_update_event",
        "health_status_changed_event",
        "app_terminated_event",
        "event_stream_attached",
    ]
    stream_client = MarathonClient(emulator.url)

    def read():
        try:
            for event in stream_client.event_stream(event_types=wanted):
                events.put(event)
        except Exception as exc:  # the stream ends when the emulator stops
            events.put(exc)

    threading.Thread(target=read, daemon=True).start()
    attached = events.get(timeout=10)
    assert attached.event_type == "event_stream_attached"
    client.create_app("/conf/ev", web_app(1))
    settled(client, "/conf/ev")
    client.delete_app("/conf/ev")
    wait_until(lambda: not client.list_apps(app_id="/conf/ev"), 10, message="app gone")
    with pytest.raises(NotFoundError):
        client.get_app("/conf/ev")
    seen: list = []

    def terminated():
        while not events.empty():
            seen.append(events.get())
        return any(getattr(e, "event_type", "") == "app_terminated_event" for e in seen)

    wait_until(terminated, 30, message="app_terminated_event")
    types = [e.event_type for e in seen]
    for t in wanted[:-1]:
        assert t in types, f"{t} not in {types}"
    assert all(t in wanted for t in types)  # the event_type filter is honoured
    post = next(e for e in seen if e.event_type == "api_post_event")
    assert post.app_definition["id"] == "/conf/ev"
    statuses = [e.task_status for e in seen if e.event_type == "status_update_event"]
    assert statuses[:2] == ["TASK_STAGING", "TASK_RUNNING"] and "TASK_KILLED" in statuses
    assert any(e.alive for e in seen if e.event_type == "health_status_changed_event")
    info = next(e for e in seen if e.event_type == "deployment_info")
    assert info.plan.target.apps[0]["id"] == "/conf/ev"
    assert containers_of(docker_client, emulator.cluster, "/conf/ev") == []


def test_events_need_event_stream_accept(emulator):
    r = requests.get(emulator.url + "/v2/events", headers={"Accept": "application/json"}, timeout=5)
    assert r.status_code == 405


def test_restart_replaces_all_tasks(client):
    client.create_app("/conf/restarting", web_app(1))
    before = settled(client, "/conf/restarting")
    result = client.restart_app("/conf/restarting")
    assert result["deploymentId"]
    after = settled(client, "/conf/restarting")
    assert after.tasks[0].id != before.tasks[0].id
    assert after.version_info.last_config_change_at > before.version_info.last_config_change_at
