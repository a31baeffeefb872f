"""The drain's pure decisions (saltyard/maintenance/drain.py): whether an agent's tasks have
anywhere else to go, and how to move one without going below the app's healthy capacity."""

from __future__ import annotations

import pytest

from saltyard.maintenance.drain import AgentView, agent_views, capacity_plan, nowhere_to_go

CHECK = [{"protocol": "HTTP", "path": "/", "portIndex": 0}]


def agent(name: str, env: str, **kw) -> AgentView:
    return AgentView(name, {"env": env, **kw.pop("attributes", {})}, **kw)


def task(host: str, n: int = 0, healthy: bool = True, ports=()) -> dict:
    return {
        "id": f"t-{host}-{n}",
        "host": host,
        "state": "TASK_RUNNING",
        "ports": list(ports),
        "healthCheckResults": [{"alive": healthy}],
    }


def app(app_id: str, tasks: list[dict], **extra) -> dict:
    return {
        "id": app_id,
        "instances": len(tasks),
        "cpus": 0.5,
        "mem": 256,
        "disk": 0,
        "healthChecks": CHECK,
        "tasks": tasks,
        **extra,
    }


def test_the_only_agent_of_its_env_has_nowhere_to_go_and_the_reason_names_it():
    agents = [agent("agent-fat", "fat"), agent("agent-prod", "prod")]
    pinned = app("/fat/web", [task("agent-fat")], constraints=[["env", "CLUSTER", "fat"]])
    free = app("/any/web", [task("agent-fat", 1)])
    stranded = nowhere_to_go("agent-fat", [pinned, free], agents)
    assert list(stranded) == ["/fat/web"]
    assert "meets its constraints" in stranded["/fat/web"]
    assert '["env", "CLUSTER", "fat"]' in stranded["/fat/web"]
    assert "agent-prod (env=prod)" in stranded["/fat/web"]


def test_a_second_agent_of_the_env_is_somewhere_to_go_unless_it_is_in_maintenance():
    agents = [agent("fat-1", "fat"), agent("fat-2", "fat"), agent("prod-1", "prod")]
    pinned = app("/fat/web", [task("fat-1"), task("fat-2")], constraints=[["env", "LIKE", "fat"]])
    assert nowhere_to_go("fat-1", [pinned], agents) == {}
    agents[1] = AgentView("fat-2", {"env": "fat"}, in_maintenance=True)
    assert (
        "no other agent outside maintenance meets"
        in nowhere_to_go("fat-1", [pinned], agents)["/fat/web"]
    )


def test_unique_hostname_needs_an_agent_without_an_instance():
    agents = [agent("a", "fat"), agent("b", "fat")]
    spread = app("/u", [task("a"), task("b")], constraints=[["hostname", "UNIQUE"]])
    why = nowhere_to_go("a", [spread], agents)["/u"]
    assert "allow no more of its instances on b" in why
    agents.append(agent("c", "fat"))
    assert nowhere_to_go("a", [spread], agents) == {}


def test_several_tasks_crowding_one_agent_count_against_it():
    # Two instances per agent at most: b already runs one, so only one of a's two fits there.
    agents = [agent("a", "fat"), agent("b", "fat")]
    capped = app(
        "/m", [task("a", 0), task("a", 1), task("b")], constraints=[["hostname", "MAX_PER", "2"]]
    )
    assert "/m" in nowhere_to_go("a", [capped], agents)
    agents.append(agent("c", "fat"))
    assert nowhere_to_go("a", [capped], agents) == {}


def test_resources_and_fixed_host_ports_when_the_master_reports_them():
    small = agent("b", "fat", free={"cpus": 0.25, "mem": 1024, "disk": 0})
    roomy = agent("b", "fat", free={"cpus": 2, "mem": 1024, "disk": 0})
    web = app("/r", [task("a")])
    assert (
        "b lacks resources (cpus 0.25 free < 0.5)"
        in nowhere_to_go("a", [web], [agent("a", "fat"), small])["/r"]
    )
    assert nowhere_to_go("a", [web], [agent("a", "fat"), roomy]) == {}
    # Two tasks to move, room for one: the second finds the first's cpus gone.
    two = app("/r2", [task("a", 0), task("a", 1)])
    tight = agent("b", "fat", free={"cpus": 0.75, "mem": 1024, "disk": 0})
    assert "/r2" in nowhere_to_go("a", [two], [agent("a", "fat"), tight])
    fixed = app(
        "/p",
        [task("a", ports=[8080])],
        container={"portMappings": [{"containerPort": 80, "hostPort": 8080}]},
    )
    busy = agent("b", "fat", ports_in_use=frozenset({8080}))
    assert (
        "b already uses host port(s) [8080]"
        in nowhere_to_go("a", [fixed], [agent("a", "fat"), busy])["/p"]
    )


def test_apps_without_tasks_on_the_agent_are_not_its_concern():
    agents = [agent("a", "fat"), agent("b", "prod")]
    elsewhere = app("/x", [task("b")], constraints=[["env", "CLUSTER", "prod"]])
    assert nowhere_to_go("a", [elsewhere], agents) == {}


def test_agent_views_from_the_master_and_marathon():
    slaves = [
        {
            "hostname": "a",
            "attributes": {"env": "fat", "rack_num": 3},
            "resources": {"cpus": 4, "mem": 4096, "disk": 100},
            "used_resources": {"cpus": 1.5, "mem": 1024},
            "active": True,
        },
        {"hostname": "b", "attributes": {"env": "prod"}, "resources": {"ports": "[1-2]"}},
        {"hostname": "c", "attributes": {}, "active": False},
    ]
    apps = [{"id": "/x", "tasks": [task("b", ports=[31001, 31002])]}]
    a, b, c = agent_views(slaves, {"b"}, apps)
    assert a.attributes == {"env": "fat", "rack_num": "3"}
    assert a.free == {"cpus": 2.5, "mem": 3072, "disk": 100}
    assert not a.in_maintenance
    assert b.free is None and b.in_maintenance and b.ports_in_use == {31001, 31002}
    assert c.in_maintenance  # an inactive agent takes no task either


@pytest.mark.parametrize(
    "instances, healthy, strategy, start_first",
    [
        (2, 2, {}, True),  # defaults 1/1: never below 2 healthy, so start one first
        (2, 2, {"minimumHealthCapacity": 0.5}, False),  # may lose one: kill first
        (3, 3, {"minimumHealthCapacity": 0.5}, False),
        (2, 1, {"minimumHealthCapacity": 0.5}, True),  # already at its floor of 1
        (4, 4, {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.25}, True),  # 5 allowed
        (4, 4, {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.2}, False),  # 4.8: no 5th
    ],
)
def test_capacity_plan(instances, healthy, strategy, start_first):
    one = {"instances": instances, "upgradeStrategy": strategy}
    plan = capacity_plan(one, healthy)
    assert plan.start_first is start_first
    if not start_first and strategy.get("maximumOverCapacity") == 0.2:
        assert "allows no instance over 4" in plan.note


def test_capacity_plan_counts_the_real_instances_of_an_app_already_scaled_up():
    # A drain that stopped after its scale-up: 3 healthy of 3 now, but the app's own count is 2.
    plan = capacity_plan({"instances": 3}, 3, instances=2)
    assert plan.floor == 2 and plan.start_first is False


def test_the_ledger_outlives_the_run_that_wrote_it(tmp_path):
    from saltyard.maintenance.drain import Ledger

    path = tmp_path / "cache" / "drain-a.json"
    first = Ledger(path)
    first.record("/web", 3)
    assert Ledger(path).get("/web") == 3  # what a re-run after a crash reads
    first.forget("/web")
    assert not path.exists() and Ledger(path).get("/web") is None
    memory = Ledger(None)
    memory.record("/web", 2)
    assert memory.get("/web") == 2


def test_an_agent_reserved_for_a_role_takes_only_the_apps_that_accept_it():
    # agent-vm is reserved for "slow" (a Mesos agent's --default_role); fat-2 is unreserved.
    vm = agent("agent-vm", "fat", role="slow")
    both = app("/both", [task("fat-1")], acceptedResourceRoles=["*", "slow"])
    general = app("/general", [task("fat-1", 1)])
    agents = [agent("fat-1", "fat"), vm]
    stranded = nowhere_to_go("fat-1", [both, general], agents)
    assert list(stranded) == ["/general"], stranded
    assert stranded["/general"] == (
        "it accepts resources of roles ['*'] only, and no other agent outside maintenance has "
        "them (the others: agent-vm (role slow))"
    )
    # Marathon's default roles, when the site gives it the reserved one too.
    assert nowhere_to_go("fat-1", [general], agents, default_roles=("*", "slow")) == {}
    # Leaving the reserved agent: only to an unreserved one if the app accepts "*".
    only_slow = app("/only-slow", [task("agent-vm")], acceptedResourceRoles=["slow"])
    back = app("/back", [task("agent-vm", 1)], acceptedResourceRoles=["*", "slow"])
    stranded = nowhere_to_go("agent-vm", [only_slow, back], agents)
    assert list(stranded) == ["/only-slow"] and "roles ['slow'] only" in stranded["/only-slow"]


def test_the_reserved_role_is_read_from_the_masters_reservations():
    ports = {"ports": "[31000-32000]"}
    slaves = [
        {"hostname": "a", "reserved_resources": {}, "unreserved_resources": ports},
        {"hostname": "b", "reserved_resources": {"slow": ports}, "unreserved_resources": {}},
        {"hostname": "c"},  # a master that reports no reservations: unreserved
        # Partly reserved: it still offers unreserved resources, so "*" apps may run there.
        {"hostname": "d", "reserved_resources": {"slow": ports}, "unreserved_resources": ports},
    ]
    assert [v.role for v in agent_views(slaves, (), [])] == ["*", "slow", "*", "*"]
