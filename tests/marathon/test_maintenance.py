"""Mesos maintenance through the emulator (it plays Mesos's part): the primitives (schedule, DOWN,
UP) driven by saltyard's Mesos master client, Marathon's maintenance mode (no task placed on an
agent whose window has begun), and saltyard's drain (saltyard/maintenance/drain.py and the Salt
``mesos.drain`` over it): tasks moved one at a time without going below the app's healthy
capacity, the machine DOWN only at the end, refusals before any change."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from marathon_helpers import docker_app, wait_until

from saltyard.clients.marathon import MarathonClient
from saltyard.clients.mesos import HOUR_NS, MesosError, MesosMasterClient
from saltyard.maintenance.drain import DrainRefused, drain_agent
from tests.support.salt_loader import load_module

HEALTH = [
    {
        "protocol": "HTTP",
        "path": "/",
        "portIndex": 0,
        "intervalSeconds": 1,
        "timeoutSeconds": 3,  # a loaded 2-core CI machine can be slow to answer
        "gracePeriodSeconds": 20,
        "maxConsecutiveFailures": 3,
    }
]


def deploy(marathon: MarathonClient, app: dict) -> None:
    ref = marathon.create_app(app)
    marathon.wait_for_deployment(ref["deployments"][0]["id"], timeout=60, app_id=app["id"])
    wait_until(
        lambda: marathon.get_app(app["id"])["tasksHealthy"] == app["instances"]
        if app.get("healthChecks")
        else marathon.get_app(app["id"])["tasksRunning"] == app["instances"],
        60,
        message=f"{app['id']} healthy",
    )


def placement(marathon: MarathonClient) -> dict[str, tuple[str, str]]:
    return {t["id"]: (t["host"], t["state"]) for t in marathon.list_tasks()}


class Watcher(threading.Thread):
    """Polls Marathon and the maintenance status while a drain runs: the app's healthy count,
    the tasks on the drained agent, and whether the machine was DOWN while any was there."""

    def __init__(self, url: str, app_id: str, host: str):
        super().__init__(daemon=True)
        self.url, self.app_id, self.host = url, app_id, host
        self.stop = threading.Event()
        self.healthy: list[int] = []
        self.here: list[int] = []
        self.killing_here: list[int] = []
        self.down_with_tasks: list[list[str]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                # Status before tasks: once DOWN is seen, the tasks read after it must be gone.
                status = session.get(self.url + "/master/maintenance/status", timeout=5).json()
                down = any(m["hostname"] == self.host for m in status["down_machines"])
                app = session.get(f"{self.url}/v2/apps{self.app_id}", timeout=5).json()["app"]
            except (requests.RequestException, ValueError, KeyError) as exc:
                self.errors.append(repr(exc))
                continue
            here = [t for t in app["tasks"] if t["host"] == self.host]
            self.healthy.append(app["tasksHealthy"])
            if not self.here or self.here[-1] != len(here):
                self.here.append(len(here))
            self.killing_here.append(sum(1 for t in here if t["state"] != "TASK_RUNNING"))
            if down and here:
                self.down_with_tasks.append([t["id"] for t in here])
            time.sleep(0.05)


def test_drain_moves_tasks_one_at_a_time_without_losing_capacity(make_emulator, tmp_path):
    emu = make_emulator("drain", offset=1600).start()
    marathon, mesos = MarathonClient(emu.url), MesosMasterClient(emu.url)
    # Three instances, no constraint: both agents can run it; the emulator spreads them two on
    # agent-fat (first by name on ties), one on agent-prod.
    deploy(marathon, docker_app("/drain/web", instances=3, healthChecks=HEALTH))
    before = placement(marathon)
    on_fat = sorted(i for i, (h, _) in before.items() if h == "agent-fat")
    assert len(on_fat) == 2, before

    watcher = Watcher(emu.url, "/drain/web", "agent-fat")
    watcher.start()
    steps: list[dict] = []
    ledger = tmp_path / "ledger" / "drain-agent-fat.json"
    try:
        report = drain_agent(
            marathon,
            mesos,
            "agent-fat",
            interval=0.25,
            task_timeout=90,
            ledger_path=ledger,
            progress=steps.append,
        )
    finally:
        watcher.stop.set()
        watcher.join(10)
    assert not watcher.errors, watcher.errors[:3]

    # Per task: which, where it went, how long; one at a time, each replaced on agent-prod.
    assert sorted(m["task"] for m in report["moved"]) == on_fat, report
    assert steps == report["moved"]
    for move in report["moved"]:
        assert move["from"] == "agent-fat" and move["to"] == "agent-prod", move
        assert move["replaced_by"] not in before and move["seconds"] > 0, move
        assert move["how"] == "replacement started first", move
    assert len({m["replaced_by"] for m in report["moved"]}) == 2
    assert report["changed"] is True and report["mode"] == "DOWN" and report["stopped"] == []

    # Never below the app's healthy capacity: its own 3 instances (the drain ran a 4th for a
    # while, so Marathon's instance count was 4 then; capacity is the app's count, 3).
    assert len(watcher.healthy) > 20, watcher.healthy
    assert min(watcher.healthy) >= 3, watcher.healthy
    # One at a time: agent-fat went 2 -> 1 -> 0, never two tasks there being killed at once.
    assert watcher.here == [2, 1, 0], watcher.here
    assert max(watcher.killing_here) <= 1
    # DOWN only at the end, when the agent ran none of the app's tasks.
    assert watcher.down_with_tasks == []
    assert mesos.mode("agent-fat") == "DOWN"

    app = marathon.get_app("/drain/web")
    assert app["instances"] == 3 and app["tasksHealthy"] == 3, app
    assert {t["host"] for t in app["tasks"]} == {"agent-prod"}
    assert not ledger.exists()

    # Again: already DOWN, nothing changes.
    unchanged = placement(marathon)
    schedule = mesos.schedule()
    again = drain_agent(marathon, mesos, "agent-fat", interval=0.25, ledger_path=ledger)
    assert again["changed"] is False and again["moved"] == [], again
    assert placement(marathon) == unchanged
    assert mesos.schedule() == schedule and mesos.mode("agent-fat") == "DOWN"


def test_a_drain_already_draining_continues(make_emulator, tmp_path):
    """An earlier drain stopped after scheduling maintenance and scaling the app up by one: the
    re-run takes the extra instance from the ledger, not for one of the app's own."""
    emu = make_emulator("drain-again", offset=1800).start()
    marathon, mesos = MarathonClient(emu.url), MesosMasterClient(emu.url)
    deploy(marathon, docker_app("/again/web", instances=2, healthChecks=HEALTH))
    ledger = tmp_path / "drain-agent-fat.json"
    ledger.write_text('{"/again/web": 2}')
    assert mesos.schedule_machine("agent-fat")
    marathon.scale_app("/again/web", 3)
    wait_until(lambda: marathon.get_app("/again/web")["tasksHealthy"] == 3, 60, message="3 healthy")
    # Maintenance mode: the third instance went to agent-prod, not the DRAINING agent-fat.
    hosts = sorted(t["host"] for t in marathon.list_tasks("/again/web"))
    assert hosts == ["agent-fat", "agent-prod", "agent-prod"], hosts

    report = drain_agent(marathon, mesos, "agent-fat", interval=0.25, ledger_path=ledger)
    assert len(report["moved"]) == 1 and report["scheduled"] is False, report
    app = marathon.get_app("/again/web")
    assert app["instances"] == 2, app  # back to its own count, not 3
    wait_until(lambda: marathon.get_app("/again/web")["tasksHealthy"] == 2, 30, message="2 healthy")
    assert {t["host"] for t in marathon.list_tasks("/again/web")} == {"agent-prod"}
    assert not ledger.exists() and mesos.mode("agent-fat") == "DOWN"


def test_a_drain_with_nowhere_to_go_is_refused_before_any_change(make_emulator, tmp_path):
    emu = make_emulator("drain-refused", offset=2000).start()
    marathon, mesos = MarathonClient(emu.url), MesosMasterClient(emu.url)
    # agent-fat is the only agent of env fat.
    pinned = docker_app(
        "/fat/pinned", instances=1, healthChecks=HEALTH, constraints=[["env", "CLUSTER", "fat"]]
    )
    deploy(marathon, pinned)
    deploy(marathon, docker_app("/fat/free", instances=1, healthChecks=HEALTH))
    before = placement(marathon)
    assert sorted(h for h, _ in before.values()) == ["agent-fat", "agent-fat"], before
    versions = {a: marathon.get_app(a)["version"] for a in ("/fat/pinned", "/fat/free")}

    with pytest.raises(DrainRefused) as refused:
        drain_agent(marathon, mesos, "agent-fat", interval=0.25)
    message = str(refused.value)
    assert "/fat/pinned" in message and "/fat/free" not in message, message
    assert '["env", "CLUSTER", "fat"]' in message and "agent-prod (env=prod" in message, message
    assert "Nothing was changed" in message

    # The Salt module says the same, as a CommandExecutionError (the orchestration's failure).
    config = {"marathon:url": emu.url, "mesos:operator_api": {"url": emu.url}}
    mod = load_module("_modules", "mesos", salt={"config.get": lambda k, d=None: config.get(k, d)})
    assert mod.__virtual__() == "mesos"
    with pytest.raises(Exception, match="refusing to drain agent-fat.*/fat/pinned") as salted:
        mod.drain("agent-fat")
    assert type(salted.value).__name__ == "CommandExecutionError"
    with pytest.raises(Exception, match="accept_downtime='yes': expected True or False"):
        mod.drain("agent-fat", accept_downtime="yes")
    # Its check (what orch.kernel_rollout plans with) refuses the same way, and with downtime
    # accepted says what the drain would move and stop, changing nothing either.
    with pytest.raises(Exception, match="refusing to drain agent-fat.*/fat/pinned"):
        mod.drain_check("agent-fat")
    plan = mod.drain_check("agent-fat", accept_downtime=True)
    assert plan["mode"] == "UP" and plan["move"] == ["/fat/free"], plan
    assert list(plan["stop"]) == ["/fat/pinned"], plan

    # Nothing changed: no maintenance window, no task killed or moved, no app scaled.
    assert mesos.schedule() == {"windows": []}
    assert mesos.mode("agent-fat") == "UP"
    assert placement(marathon) == before
    assert {a: marathon.get_app(a)["version"] for a in versions} == versions

    # Downtime accepted: the free app moves, the pinned one stops when the machine goes DOWN.
    pinned_task = next(i for i, t in before.items() if i.startswith("fat_pinned"))
    report = mod.drain("agent-fat", accept_downtime=True, timeout=90)
    assert [m["app"] for m in report["moved"]] == ["/fat/free"], report
    assert report["moved"][0]["to"] == "agent-prod"
    assert report["stopped"] == [pinned_task], report
    assert list(report["downtime_accepted"]) == ["/fat/pinned"], report
    assert mesos.mode("agent-fat") == "DOWN"
    assert marathon.list_tasks("/fat/pinned") == []
    # It comes back when the agent is up (nowhere else to go, as refused above).
    assert mod.up("agent-fat") is True
    wait_until(
        lambda: [t["host"] for t in marathon.list_tasks("/fat/pinned")] == ["agent-fat"],
        60,
        message="/fat/pinned back on agent-fat",
    )


def test_maintenance_mode_places_nothing_on_an_agent_whose_window_began(make_emulator):
    emu = make_emulator("maint-mode", offset=2200).start()
    marathon, mesos = MarathonClient(emu.url), MesosMasterClient(emu.url)
    deploy(marathon, docker_app("/mode/web", instances=2))
    # A window that begins in an hour: the agent is DRAINING for Mesos, but Marathon (with
    # --draining_seconds 0) still uses it until the window begins.
    later = {
        "machine_ids": [{"hostname": "agent-fat"}],
        "unavailability": {
            "start": {"nanoseconds": time.time_ns() + HOUR_NS},
            "duration": {"nanoseconds": HOUR_NS},
        },
    }
    mesos._request("POST", "/master/maintenance/schedule", {"windows": [later]})
    assert mesos.mode("agent-fat") == "DRAINING"
    ref = marathon.scale_app("/mode/web", 4)
    marathon.wait_for_deployment(ref.deployment_id, timeout=60, app_id="/mode/web")
    hosts = sorted(t["host"] for t in marathon.list_tasks("/mode/web"))
    assert hosts.count("agent-fat") == 2, hosts
    # A window that has begun: new tasks go to agent-prod only; the ones there keep running.
    mesos._request("POST", "/master/maintenance/schedule", {"windows": []})
    assert mesos.schedule_machine("agent-fat")
    ref = marathon.scale_app("/mode/web", 6)
    marathon.wait_for_deployment(ref.deployment_id, timeout=60, app_id="/mode/web")
    hosts = sorted(t["host"] for t in marathon.list_tasks("/mode/web"))
    assert hosts.count("agent-fat") == 2 and hosts.count("agent-prod") == 4, hosts
    # The agent list a drain reads: hostnames and attributes, as the master reports them.
    slaves = {s["hostname"]: s["attributes"] for s in mesos.agents()}
    assert slaves == {
        "agent-fat": {"env": "fat", "rack": "r1"},
        "agent-prod": {"env": "prod", "rack": "r2"},
    }


def test_down_kills_tasks_and_up_restores(make_emulator):
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
    # The primitives alone: DOWN killed the task at once (saltyard's drain moves them first).
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
