"""Mesos maintenance through the emulator (it plays Mesos's part): schedule, DOWN, UP, driven by
saltyard's Mesos master client, with Marathon replacing a DOWN agent's tasks elsewhere."""

from __future__ import annotations

import pytest
from marathon_helpers import docker_app, wait_until

from saltyard.clients.marathon import MarathonClient
from saltyard.clients.mesos import MesosError, MesosMasterClient


def test_drain_moves_tasks_and_up_restores(make_emulator):
    emu = make_emulator("maint", offset=1000).start()
    marathon, mesos = MarathonClient(emu.url), MesosMasterClient(emu.url)
    app = docker_app("/maint/web", instances=2)
    ref = marathon.create_app(app)
    marathon.wait_for_deployment(ref["deployments"][0]["id"], timeout=60, app_id="/maint/web")
    hosts = sorted(t["host"] for t in marathon.list_tasks("/maint/web"))
    assert hosts == ["agent-fat", "agent-prod"], hosts

    with pytest.raises(MesosError, match="'agent-fat' is not in DRAINING mode"):
        mesos.down("agent-fat")
    assert mesos.schedule_machine("agent-fat") is True
    assert mesos.schedule_machine("agent-fat") is False  # already scheduled: unchanged
    status = mesos.status()
    assert status["draining_machines"] == [{"id": {"hostname": "agent-fat"}}], status
    mesos.down("agent-fat")
    assert mesos.is_down("agent-fat")

    def moved():
        tasks = marathon.list_tasks("/maint/web")
        return len(tasks) == 2 and all(t["host"] == "agent-prod" for t in tasks)

    wait_until(moved, 60, message="both tasks on agent-prod")
    with pytest.raises(MesosError, match="is DOWN and must stay scheduled"):
        mesos._request("POST", "/master/maintenance/schedule", {"windows": []})

    mesos.up("agent-fat")
    assert mesos.status() == {"draining_machines": [], "down_machines": []}
    assert mesos.schedule() == {"windows": []}
    with pytest.raises(MesosError, match="not in DOWN mode"):
        mesos.up("agent-fat")
    # The agent takes tasks again: a scale-up lands there (it has none, so it is least loaded).
    marathon.scale_app("/maint/web", 3)
    wait_until(
        lambda: "agent-fat" in {t["host"] for t in marathon.list_tasks("/maint/web")},
        60,
        message="a task on agent-fat again",
    )


def test_maintenance_survives_a_restart(make_emulator):
    emu = make_emulator("maint-restart", offset=1200).start()
    mesos = MesosMasterClient(emu.url)
    mesos.schedule_machine("agent-prod")
    mesos.down("agent-prod")
    emu.stop()
    emu.start()
    assert MesosMasterClient(emu.url).is_down("agent-prod")


def test_bad_machine_named(make_emulator):
    emu = make_emulator("maint-bad", offset=1400).start()
    with pytest.raises(MesosError, match="no hostname"):
        MesosMasterClient(emu.url)._request("POST", "/master/machine/down", [{"ip": "1.2.3.4"}])
    with pytest.raises(MesosError, match="invalid machine hostname ''"):
        MesosMasterClient(emu.url).down("")
