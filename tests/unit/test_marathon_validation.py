"""``validate_app``: Marathon's app definition rules, checked without HTTP."""

from __future__ import annotations

import pytest

from saltyard.clients.marathon import _app_path
from saltyard.marathon_appdef import (
    AppDefinitionError,
    app_id_errors,
    canonical_id,
    upgrade_to_new_shape,
    validate_app,
)


def good_app(**extra) -> dict:
    app = {
        "id": "/team/web.v1/api-2",
        "cmd": "python3 -m http.server $PORT0",
        "instances": 2,
        "cpus": 0.1,
        "mem": 64,
        "env": {"LOG_LEVEL": "info"},
        "labels": {"team": "ops"},
        "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"], ["env", "LIKE", "p.*"]],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
        "portDefinitions": [{"port": 0}, {"port": 0}],
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 1}],
    }
    app.update(extra)
    return app


def bridged(**extra) -> dict:
    app = good_app(
        container={
            "type": "DOCKER",
            "docker": {"image": "nginx:1.25"},
            "portMappings": [{"containerPort": 80, "hostPort": 0}],
        },
        networks=[{"mode": "container/bridge"}],
        healthChecks=[{"protocol": "HTTP", "portIndex": 0}],
    )
    del app["portDefinitions"]
    app.update(extra)
    return app


def only(errors: list[AppDefinitionError]) -> AppDefinitionError:
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize(
    "app",
    [
        good_app(),
        bridged(),
        {"id": "minimal", "cmd": "sleep 60"},
        # pre-1.5 shape: network and port mappings under container.docker
        {
            "id": "/old",
            "container": {
                "docker": {
                    "image": "nginx",
                    "network": "BRIDGE",
                    "portMappings": [{"containerPort": 80}],
                }
            },
            "healthChecks": [{"protocol": "TCP", "portIndex": 0}],
        },
        good_app(healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}]),
        good_app(healthChecks=[{"protocol": "TCP", "port": 8080}]),
    ],
)
def test_valid_definitions_have_no_errors(app):
    assert validate_app(app) == []


@pytest.mark.parametrize(
    ("change", "path", "named"),
    [
        ({"id": "/team/Bad_ID"}, "/id", "'Bad_ID'"),
        ({"id": "/team/-web"}, "/id", "'-web'"),
        ({"id": "/team/tasks"}, "/id", "'tasks'"),
        ({"id": "/"}, "/id", "id '/'"),
        ({"instances": -1}, "/instances", "instances -1"),
        ({"instances": 1.5}, "/instances", "instances 1.5"),
        ({"cpus": -0.5}, "/cpus", "cpus -0.5"),
        ({"mem": "64"}, "/mem", "mem '64'"),
        ({"args": ["sleep", "60"]}, "/", "args ['sleep', '60']"),
        ({"cmd": ["sleep"]}, "/cmd", "cmd ['sleep']"),
        ({"backoffFactor": 0.5}, "/backoffFactor", "backoffFactor 0.5"),
        ({"killSelection": "RANDOM"}, "/killSelection", "'RANDOM'"),
        ({"env": {"DEBUG": True}}, "/env", "env['DEBUG'] True"),
        ({"labels": ["a"]}, "/labels", "labels ['a']"),
        (
            {"upgradeStrategy": {"minimumHealthCapacity": 1.5}},
            "/upgradeStrategy/minimumHealthCapacity",
            "minimumHealthCapacity 1.5",
        ),
        (
            {"upgradeStrategy": {"maximumOverCapacity": -0.1}},
            "/upgradeStrategy/maximumOverCapacity",
            "maximumOverCapacity -0.1",
        ),
        ({"constraints": [["hostname", "NEAR", "x"]]}, "/constraints(0)", "'NEAR'"),
        ({"constraints": [["hostname"]]}, "/constraints(0)", "['hostname']"),
        ({"constraints": [["rack", "MAX_PER", "0"]]}, "/constraints(0)", "'0'"),
        ({"constraints": [["rack", "GROUP_BY", "two"]]}, "/constraints(0)", "'two'"),
        ({"constraints": [["rack", "LIKE", "(["]]}, "/constraints(0)", "'(['"),
        ({"constraints": [["rack", "IS"]]}, "/constraints(0)", "IS requires a value"),
        ({"constraints": "hostname:UNIQUE"}, "/constraints", "'hostname:UNIQUE'"),
        (
            {"healthChecks": [{"protocol": "HTTP", "portIndex": 3}]},
            "/healthChecks(0)",
            "portIndex 3",
        ),
        (
            {"healthChecks": [{"protocol": "GOPHER"}]},
            "/healthChecks(0)/protocol",
            "'GOPHER'",
        ),
        (
            {"healthChecks": [{"protocol": "HTTP", "intervalSeconds": -1}]},
            "/healthChecks(0)/intervalSeconds",
            "intervalSeconds -1",
        ),
        (
            {"healthChecks": [{"protocol": "TCP", "port": 70000}]},
            "/healthChecks(0)/port",
            "port 70000",
        ),
        ({"healthChecks": [{"protocol": "COMMAND"}]}, "/healthChecks(0)/command", "COMMAND"),
        ({"portDefinitions": [{"port": 70000}]}, "/portDefinitions(0)/port", "port 70000"),
        ({"networks": [{"mode": "overlay"}]}, "/networks(0)", "'overlay'"),
    ],
)
def test_each_rule_names_path_and_value(change, path, named):
    app = good_app(**change)
    if "healthChecks" not in change and "portDefinitions" in change:
        app["healthChecks"] = []
    error = only(validate_app(app))
    assert error.path == path, error
    assert named in error.message, error
    assert str(error) == error.message


@pytest.mark.parametrize(
    ("change", "path", "named"),
    [
        ({"portDefinitions": [{"port": 0}]}, "/portDefinitions", "container (BRIDGE/USER)"),
        (
            {"container": {"docker": {"image": ""}, "portMappings": []}},
            "/container/docker/image",
            "image ''",
        ),
        (
            {"container": {"type": "RKT", "docker": {"image": "x"}}},
            "/container/type",
            "'RKT'",
        ),
        (
            {
                "container": {
                    "docker": {"image": "x"},
                    "portMappings": [{"containerPort": 80, "hostPort": -1}],
                }
            },
            "/container/portMappings(0)/hostPort",
            "hostPort -1",
        ),
        (
            {"container": {"docker": {"image": "x", "parameters": [{"value": "1"}]}}},
            "/container/docker/parameters",
            "[{'value': '1'}]",
        ),
    ],
)
def test_container_rules(change, path, named):
    app = bridged(healthChecks=[], **change)
    error = only(validate_app(app))
    assert (error.path, named in error.message) == (path, True), error


def test_port_mappings_need_container_networking():
    app = bridged(networks=[{"mode": "host"}])
    error = only(validate_app(app))
    assert error.path == "/container/portMappings"
    assert "container (BRIDGE/USER) networking" in error.message


def test_pre_15_shape_is_checked_too():
    app = {
        "id": "/old",
        "container": {"docker": {"image": "x", "network": "WEIRD", "portMappings": [{}]}},
    }
    paths = {e.path: e.message for e in validate_app(app)}
    assert "'WEIRD'" in paths["/container/docker/network"]
    # WEIRD is not container networking, so the mappings are refused as well
    assert "/container/docker/portMappings" in paths


def test_health_check_port_index_counts_the_right_ports():
    # container networking: portIndex addresses port mappings (one here)
    error = only(validate_app(bridged(healthChecks=[{"protocol": "HTTP", "portIndex": 1}])))
    assert error.path == "/healthChecks(0)"
    assert "portIndex 1" in error.message and "1 port mapping(s)" in error.message
    # host networking without portDefinitions: Marathon's one default port
    app = {"id": "/h", "cmd": "x", "healthChecks": [{"portIndex": 0}]}
    assert validate_app(app) == []
    app["healthChecks"] = [{"portIndex": 1}]
    assert only(validate_app(app)).path == "/healthChecks(0)"


def test_missing_command_and_container():
    error = only(validate_app({"id": "/nothing"}))
    assert error.path == "/" and "cmd, args or a container" in error.message


def test_several_problems_are_all_reported():
    errors = validate_app({"id": "/A", "cmd": "x", "args": ["y"], "instances": -3})
    assert [e.path for e in errors] == ["/id", "/", "/instances"]


def test_not_a_mapping():
    assert only(validate_app(["id"])).path == "/"


def test_app_id_errors():
    assert app_id_errors("/foo/bar.baz-1") == []
    for bad in ("/Foo", "/foo-", "/a/tasks", "", None):
        assert app_id_errors(bad), bad
    assert only(app_id_errors("x_y", path="/apps(0)/id")).path == "/apps(0)/id"


# ---------------------------------------------------------------------- shared id and shape rules


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("web", "/web"),
        ("/web", "/web"),
        ("/team//web/", "/team/web"),
        (" /team/web ", "/team/web"),
        ("///", "/"),
    ],
)
def test_canonical_id(raw, canonical):
    assert canonical_id(raw) == canonical


def test_client_paths_use_the_canonical_id():
    assert _app_path("team//web/") == "/team/web"
    assert _app_path("/a b/c") == "/a%20b/c"  # segments are quoted, not rewritten
    with pytest.raises(ValueError, match="'//'"):
        _app_path("//")


def test_upgrade_to_new_shape_rewrites_the_pre_1_5_docker_network():
    old = {
        "id": "/web",
        "networks": [{"mode": "host"}],
        "container": {
            "docker": {"image": "web:1", "network": "bridge", "portMappings": [{"hostPort": 0}]}
        },
    }
    new = upgrade_to_new_shape(old)
    assert new["networks"] == [{"mode": "container/bridge"}]  # docker.network wins
    assert new["container"] == {"docker": {"image": "web:1"}, "portMappings": [{"hostPort": 0}]}
    assert old["container"]["docker"]["network"] == "bridge"  # the input is left as it is
    assert upgrade_to_new_shape({"container": {"docker": {"network": "weird"}}})["networks"] == [
        {"mode": "invalid:weird"}
    ]
    pre_1_5 = {**bridged(), "container": {"docker": {"image": "nginx:1.25", "network": "BRIDGE"}}}
    del pre_1_5["networks"]
    pre_1_5["container"]["docker"]["portMappings"] = [{"containerPort": 80, "hostPort": 0}]
    upgraded = upgrade_to_new_shape(pre_1_5)
    assert upgraded["networks"] == [{"mode": "container/bridge"}]
    assert upgraded["container"]["portMappings"] == [{"containerPort": 80, "hostPort": 0}]
    assert validate_app(upgraded) == []


def test_upgrade_to_new_shape_keeps_new_port_mappings_and_new_shape_apps():
    app = bridged()
    assert upgrade_to_new_shape(app) == app
    both = {"container": {"portMappings": [1], "docker": {"portMappings": [2]}}}
    assert upgrade_to_new_shape(both)["container"] == {"portMappings": [1], "docker": {}}


def on_networks(*networks: dict, mappings: list | None = None) -> dict:
    app = bridged(networks=list(networks), healthChecks=[])
    app["container"]["portMappings"] = mappings if mappings is not None else []
    return app


def test_container_networks_one_or_several_are_valid():
    named = {"mode": "container", "name": "macvlan"}
    assert validate_app(on_networks(named, mappings=[{"containerPort": 80}])) == []
    assert validate_app(on_networks(named, mappings=[{"containerPort": 80, "hostPort": 0}])) == []
    two = on_networks(named, {"mode": "container", "name": "b"}, mappings=[{"containerPort": 80}])
    assert validate_app(two) == []


@pytest.mark.parametrize(
    "networks",
    [
        [{"mode": "host"}, {"mode": "container", "name": "a"}],
        [{"mode": "container/bridge"}, {"mode": "container/bridge"}],
        [{"mode": "host"}, {"mode": "host"}],
    ],
)
def test_network_modes_do_not_mix(networks):
    error = only(validate_app(on_networks(*networks)))
    assert error.path == "/networks" and "never a mix" in error.message, error


def test_no_host_port_with_several_container_networks():
    app = on_networks(
        {"mode": "container", "name": "a"},
        {"mode": "container", "name": "b"},
        mappings=[{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}],
    )
    error = only(validate_app(app))
    assert error.path == "/container/portMappings(1)/hostPort", error
    assert "several container networks" in error.message
