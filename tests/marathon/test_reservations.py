"""Static reservations through the emulator: an agent whose resources are reserved for a role
(a Mesos agent's ``--default_role``; the emulator's ``@role=``) runs only the apps whose
``acceptedResourceRoles`` name that role, and saltyard's drain honours the same rule when it
decides where an agent's tasks can go.

This is how the local cluster keeps the general workload off a slow agent (a QEMU VM agent):
Marathon registers with the role (``--mesos-role``), apps without acceptedResourceRoles run on
unreserved resources only (``--default-accepted-resource-roles '*'``), and an app that may run
on both says ``["*", "<role>"]``.
"""

from __future__ import annotations

import pytest
import requests
from marathon_helpers import docker_app, wait_until

from saltyard.clients.marathon import MarathonClient, MarathonError
from saltyard.clients.mesos import MesosMasterClient
from saltyard.maintenance.drain import DrainRefused, drain_agent
from tests.support.emulator import DOCKER_SOCKET
from tests.support.salt_loader import load_module

ROLE = "slow"
OFFSET = 2400  # the suite's ports from here: two agents of 200 ports each, and agent-vm's 200
HEALTH = [
    {
        "protocol": "HTTP",
        "path": "/",
        "portIndex": 0,
        "intervalSeconds": 1,
        "timeoutSeconds": 3,
        "gracePeriodSeconds": 20,
        "maxConsecutiveFailures": 3,
    }
]


def start_reserved(make_emulator, *args: str):
    """agent-fat (env=fat), agent-prod (env=prod) and agent-vm (env=prod, reserved for ROLE),
    Marathon registered with ROLE."""
    emu = make_emulator("reserved", offset=OFFSET)
    # The 200 ports after the last of agent-prod's (@ports=LO-HI).
    lo = int(emu.agents[-1].split("@ports=")[1].split(",")[0].split("-")[1]) + 1
    emu.agents.append(
        f"agent-vm={DOCKER_SOCKET}:env=prod,@ports={lo}-{lo + 199},@bind=127.0.0.1,@role={ROLE}"
    )
    emu.args = ["--mesos-role", ROLE, *args]
    return emu.start()


@pytest.fixture
def reserved(make_emulator):
    """Apps without acceptedResourceRoles run on unreserved resources only."""
    return start_reserved(make_emulator, "--default-accepted-resource-roles", "*")


def hosts(marathon: MarathonClient, app_id: str) -> list[str]:
    return sorted(t["host"] for t in marathon.list_tasks(app_id))


def healthy(marathon: MarathonClient, app_id: str, count: int) -> None:
    wait_until(
        lambda: marathon.get_app(app_id)["tasksHealthy"] == count,
        60,
        message=f"{app_id}: {count} healthy",
    )


def test_a_reserved_agent_runs_only_the_apps_that_accept_its_role(reserved):
    marathon = MarathonClient(reserved.url)
    info = requests.get(reserved.url + "/v2/info", timeout=5).json()
    assert info["marathon_config"]["mesos_role"] == ROLE
    answer = requests.get(reserved.url + "/master/slaves", timeout=5).json()
    slaves = {s["hostname"]: s for s in answer["slaves"]}
    assert list(slaves["agent-vm"]["reserved_resources"]) == [ROLE]
    assert slaves["agent-vm"]["unreserved_resources"] == {}
    assert slaves["agent-prod"]["reserved_resources"] == {}
    assert slaves["agent-prod"]["unreserved_resources"]

    # Refused by name: a role Marathon is never offered, an empty list, a bad role name.
    for roles, message in (
        (["other"], "role 'other' is never offered to Marathon"),
        ([], "must be a non-empty array of role names"),
        (["a b"], "role 'a b' is not a Mesos role name"),
    ):
        with pytest.raises(MarathonError) as refused:
            marathon.create_app(docker_app("/roles/refused", acceptedResourceRoles=roles))
        assert refused.value.status == 422 and message in str(refused.value), refused.value
    with pytest.raises(MarathonError):
        marathon.get_app("/roles/refused")

    # Without acceptedResourceRoles: unreserved resources only (the default given), so every
    # instance of a prod app lands on agent-prod, though agent-vm has none of them.
    prod = [["env", "CLUSTER", "prod"]]
    marathon.create_app(docker_app("/roles/general", instances=3, constraints=prod))
    wait_until(lambda: len(hosts(marathon, "/roles/general")) == 3, 60, message="3 placed")
    assert hosts(marathon, "/roles/general") == ["agent-prod"] * 3

    # Accepting the role: the emulator spreads it over both prod agents.
    both = docker_app(
        "/roles/both", instances=2, constraints=prod, acceptedResourceRoles=["*", ROLE]
    )
    marathon.create_app(both)
    wait_until(lambda: len(hosts(marathon, "/roles/both")) == 2, 60, message="2 placed")
    assert hosts(marathon, "/roles/both") == ["agent-prod", "agent-vm"]
    assert marathon.get_app("/roles/both")["acceptedResourceRoles"] == ["*", ROLE]


def test_the_drain_moves_tasks_off_a_reserved_agent_only_where_their_roles_allow(reserved):
    marathon, mesos = MarathonClient(reserved.url), MesosMasterClient(reserved.url)
    prod = [["env", "CLUSTER", "prod"]]
    # One instance on each prod agent (fewest instances first, then by name).
    marathon.create_app(
        docker_app(
            "/drain/both",
            instances=2,
            constraints=prod,
            healthChecks=HEALTH,
            acceptedResourceRoles=["*", ROLE],
        )
    )
    # Only the reserved role: agent-vm is the only agent it may use.
    marathon.create_app(
        docker_app("/drain/vm-only", healthChecks=HEALTH, acceptedResourceRoles=[ROLE])
    )
    healthy(marathon, "/drain/both", 2)
    healthy(marathon, "/drain/vm-only", 1)
    assert hosts(marathon, "/drain/both") == ["agent-prod", "agent-vm"]
    assert hosts(marathon, "/drain/vm-only") == ["agent-vm"]
    before = {t["id"] for t in marathon.list_tasks()}

    with pytest.raises(DrainRefused) as refused:
        drain_agent(marathon, mesos, "agent-vm", interval=0.25)
    message = str(refused.value)
    assert "/drain/vm-only: it accepts resources of roles ['slow'] only" in message, message
    assert "agent-prod (role *)" in message and "/drain/both" not in message, message
    assert mesos.mode("agent-vm") == "UP" and mesos.schedule() == {"windows": []}
    assert {t["id"] for t in marathon.list_tasks()} == before

    # Without the app that cannot leave, the drain moves /drain/both's task to the unreserved
    # agent of its env (agent-fat is another env), and agent-vm goes DOWN empty.
    marathon.delete_app("/drain/vm-only", force=True)
    wait_until(
        lambda: sorted(t["host"] for t in marathon.list_tasks()) == ["agent-prod", "agent-vm"],
        30,
        message="/drain/vm-only's task gone",
    )
    report = drain_agent(marathon, mesos, "agent-vm", interval=0.25, task_timeout=90)
    assert [(m["app"], m["to"]) for m in report["moved"]] == [("/drain/both", "agent-prod")]
    assert mesos.mode("agent-vm") == "DOWN"
    assert hosts(marathon, "/drain/both") == ["agent-prod", "agent-prod"]
    healthy(marathon, "/drain/both", 2)


def test_the_salt_drain_takes_marathons_default_roles_from_the_marathon_pillar(make_emulator):
    # Marathon's own default: an app without acceptedResourceRoles runs on every role it is
    # offered, agent-vm's included. Placed on agent-prod (no instances anywhere: first by name).
    emu = start_reserved(make_emulator)
    marathon, mesos = MarathonClient(emu.url), MesosMasterClient(emu.url)
    marathon.create_app(docker_app("/drain/web", constraints=[["env", "CLUSTER", "prod"]]))
    wait_until(lambda: hosts(marathon, "/drain/web") == ["agent-prod"], 60, message="placed")
    # Told nothing, the drain assumes '*' only: agent-vm is not somewhere to go.
    with pytest.raises(DrainRefused, match="it accepts resources of roles \\['\\*'\\] only"):
        drain_agent(marathon, mesos, "agent-prod", interval=0.25)

    def salt_drain(config: dict):
        config = {"marathon:url": emu.url, "mesos:operator_api": {"url": emu.url}, **config}
        mod = load_module(
            "_modules", "mesos", salt={"config.get": lambda k, d=None: config.get(k, d)}
        )
        return mod.drain("agent-prod", timeout=60)

    # The site gives Marathon '*': refused, as Marathon would never move it to agent-vm.
    with pytest.raises(Exception, match="refusing to drain agent-prod.*/drain/web"):
        salt_drain({"marathon:default_accepted_resource_roles": ["*"]})
    assert mesos.mode("agent-prod") == "UP" and hosts(marathon, "/drain/web") == ["agent-prod"]
    # Only marathon:mesos_role: Marathon's default then includes the role, and so does the
    # drain's: the task moves to agent-vm.
    report = salt_drain({"marathon:mesos_role": ROLE})
    assert [(m["app"], m["to"]) for m in report["moved"]] == [("/drain/web", "agent-vm")]
    assert hosts(marathon, "/drain/web") == ["agent-vm"]
    assert mesos.mode("agent-prod") == "DOWN"
