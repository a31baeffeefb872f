"""Pure decision functions: constraints, rolling arithmetic, app definition rules, agent specs."""

from __future__ import annotations

import pytest

from saltyard import marathon_appdef
from saltyard.marathon_emulator import appdef
from saltyard.marathon_emulator.agents import Agent, AgentSpecError
from saltyard.marathon_emulator.placement import AgentInfo, eligible_agents, rolling_step

FAT = AgentInfo("a1", {"env": "fat", "rack": "r1"})
PROD = AgentInfo("a2", {"env": "prod", "rack": "r2"})
BARE = AgentInfo("a3", {})
AGENTS = [FAT, PROD, BARE]


def names(constraints, placed=()):
    return [a.name for a in eligible_agents(constraints, AGENTS, list(placed))]


def test_cluster_like_unlike():
    assert names([["env", "CLUSTER", "fat"]]) == ["a1"]
    assert names([["env", "LIKE", "f.*"]]) == ["a1"]
    assert names([["env", "UNLIKE", "f.*"]]) == ["a2", "a3"]  # missing attribute matches UNLIKE
    assert names([["hostname", "LIKE", "a[12]"]]) == ["a1", "a2"]
    assert names([["env", "CLUSTER"]], [PROD]) == ["a2"]


def test_unique_max_per_group_by():
    assert names([["hostname", "UNIQUE"]], [FAT]) == ["a2", "a3"]
    assert names([["env", "UNIQUE"]], [FAT]) == ["a2"]
    assert names([["rack", "MAX_PER", "2"]], [FAT, FAT]) == ["a2"]
    assert names([["rack", "GROUP_BY"]], [FAT]) == ["a2"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # target, old, new, new healthy, killing, mHC, mOC -> kill_old, kill_new, start
        ((2, 2, 0, 0, 0, 1.0, 1.0), (0, 0, 2)),  # defaults: start all new first
        ((2, 2, 2, 1, 0, 1.0, 1.0), (1, 0, 0)),  # kill one old per healthy new
        ((2, 2, 0, 0, 0, 0.5, 0.0), (1, 0, 1)),  # no over-capacity: kill first
        ((2, 2, 0, 0, 0, 1.0, 0.0), (1, 0, 0)),  # both bounds tight: Marathon kills one
        ((2, 1, 0, 0, 1, 1.0, 0.0), (0, 0, 0)),  # wait for that kill to finish
        ((1, 0, 3, 3, 0, 1.0, 1.0), (0, 2, 0)),  # scale down
        ((3, 0, 1, 1, 0, 1.0, 1.0), (0, 0, 2)),  # scale up
    ],
)
def test_rolling_step(args, expected):
    d = rolling_step(*args)
    assert (d.kill_old, d.kill_new, d.start_new) == expected


def test_ids_and_shapes():
    assert appdef.id_errors("/foo/bar.baz-1") == []
    assert appdef.id_errors("/Foo") and appdef.id_errors("/foo-") and appdef.id_errors("/a/tasks")
    old = {
        "container": {
            "docker": {"image": "x", "network": "BRIDGE", "portMappings": [{"containerPort": 80}]}
        }
    }
    new = marathon_appdef.upgrade_to_new_shape(old)
    assert new["networks"] == [{"mode": "container/bridge"}]
    assert new["container"]["portMappings"] == [{"containerPort": 80}]


def test_agent_spec():
    a = Agent.parse("n1=unix:///var/run/docker.sock:env=fat,@ports=100-200,@bind=127.0.0.1")
    assert (a.name, a.url, a.attributes) == ("n1", "unix:///var/run/docker.sock", {"env": "fat"})
    assert a.port_range == (100, 200) and a.bind == "127.0.0.1" and a.address == "127.0.0.1"
    b = Agent.parse("n2=tcp://10.0.0.5:2375")
    assert b.url == "tcp://10.0.0.5:2375" and b.address == "10.0.0.5" and b.attributes == {}
    with pytest.raises(AgentSpecError):
        Agent.parse("n3=/var/run/docker.sock")


def test_accepted_resource_roles_and_reserved_agents():
    slow = AgentInfo("vm", {"env": "fat"}, role="slow")
    agents = [FAT, slow]
    assert [a.name for a in eligible_agents([], agents, [])] == ["a1"]  # default: "*" only
    assert [a.name for a in eligible_agents([], agents, [], ["*", "slow"])] == ["a1", "vm"]
    assert [a.name for a in eligible_agents([], agents, [], ["slow"])] == ["vm"]
    assert Agent.parse("v=unix:///d.sock:@role=slow").info.role == "slow"
    assert Agent.parse("v=unix:///d.sock").info.role == "*"
    with pytest.raises(AgentSpecError, match="role 'a/b' is not a Mesos role name"):
        Agent.parse("v=unix:///d.sock:@role=a/b")
    errors = marathon_appdef.validate_app({"id": "/x", "cmd": "c", "acceptedResourceRoles": "*"})
    assert [e.path for e in errors] == ["/acceptedResourceRoles"], errors
    assert not marathon_appdef.validate_app(
        {"id": "/x", "cmd": "c", "acceptedResourceRoles": ["*", "slow"]}
    )
