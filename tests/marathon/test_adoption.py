"""After the emulator dies (SIGKILL) and starts again on the same state file, running tasks are
adopted from their container labels: same task ids, no duplicate containers, app kept."""

from __future__ import annotations

import json
import time

from marathon_helpers import LABEL, containers_of, docker_app, labels_of, wait_until

from saltyard.clients.marathon import MarathonClient


def test_restart_adopts_running_tasks(make_emulator, docker_client):
    emu = make_emulator("adopt").start()
    client = MarathonClient(emu.url)
    created = client.create_app(
        docker_app(
            "/adopt/web",
            instances=2,
            healthChecks=[{"protocol": "TCP", "intervalSeconds": 1, "gracePeriodSeconds": 20}],
        )
    )
    client.wait_for_deployment(created["deployments"][0]["id"], timeout=40)
    before = sorted(t["id"] for t in client.list_tasks("/adopt/web"))
    ports_before = {t["id"]: t["ports"] for t in client.list_tasks("/adopt/web")}
    assert len(before) == 2
    state = json.loads(emu.state_file.read_text())
    assert "/adopt/web" in state["apps"]

    emu.kill()
    assert len(containers_of(docker_client, emu.cluster, "/adopt/web")) == 2  # still running
    emu.start()
    after = client.__class__(emu.url)
    app = after.get_app("/adopt/web")
    assert app["version"] == created["version"]
    assert sorted(t["id"] for t in app["tasks"]) == before
    assert {t["id"]: t["ports"] for t in app["tasks"]} == ports_before
    wait_until(lambda: after.get_app("/adopt/web")["tasksHealthy"] == 2, 20, message="healthy")
    time.sleep(2)  # a few scheduler ticks: nothing new may be launched
    containers = containers_of(docker_client, emu.cluster, "/adopt/web")
    assert sorted(labels_of(c)[f"{LABEL}.task-id"] for c in containers) == before
    assert sorted(t["id"] for t in after.list_tasks("/adopt/web")) == before
