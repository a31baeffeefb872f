"""An app's release data (saltyard/release/plan.py): every refusal names the path and value."""

from __future__ import annotations

import copy

import pytest

from saltyard.release.plan import PlanError, Step, check_version, load_app

ENVS = ["fat", "uat", "prod"]
GOOD = {
    "git": "git://172.30.0.10/hello.git",
    "image": "saltyard/hello",
    "port": 8000,
    "health": {"path": "/health"},
    "instances": {"fat": 1, "uat": 1, "prod": 3},
    "resources": {"cpus": 0.1, "mem": 64},
    "canary": {
        "steps": [
            {"share": 5, "window": 60},
            {"share": 25, "window": 60},
            {"share": 50, "window": 60},
        ],
        "gate": {"max_5xx_share": 0.01, "p99_ms": 500, "min_requests": 100, "margin": 0.25},
        "inconclusive": "repeat",
        "repeat_limit": 2,
    },
}


def changed(path: str, value):
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_good_data_loads():
    app = load_app("hello", GOOD, ENVS)
    assert app.steps == (Step(5, 60), Step(25, 60), Step(50, 60))
    assert app.instances == {"fat": 1, "uat": 1, "prod": 3}
    assert app.gate.min_requests == 100 and app.inconclusive == "repeat"


@pytest.mark.parametrize(
    "path,value,message",
    [
        (
            "canary.steps.1.share",
            5,
            "steps[1]:share is 5: the shares must increase, and the step before has 5",
        ),
        ("canary.steps.0.share", 0, "canary:steps[0]:share is 0: a share is a percentage above 0"),
        ("canary.steps.2.share", 100, "canary:steps[2]:share is 100:"),
        ("canary.steps.2.share", "50", "canary:steps[2]:share is '50':"),
        ("canary.steps.0.window", 0, "canary:steps[0]:window is 0: it must be from 1 to 3600"),
        ("canary.steps.0.window", 7200, "canary:steps[0]:window is 7200"),
        ("canary.steps", [], "canary:steps is []: it must be a list of steps"),
        (
            "canary.gate.max_5xx_share",
            1.5,
            "canary:gate:max_5xx_share is 1.5: it must be from 0 to 1",
        ),
        ("canary.gate.min_requests", 0, "canary:gate:min_requests is 0"),
        (
            "canary.gate.min_requests",
            10.5,
            "canary:gate:min_requests is 10.5: it must be a whole number",
        ),
        ("canary.gate.margin", -0.1, "canary:gate:margin is -0.1"),
        ("canary.gate.p99_ms", KeyError, "canary:gate has no p99_ms"),
        ("canary.inconclusive", "pass", "canary:inconclusive is 'pass': one of fail, repeat"),
        ("instances.staging", 1, "instances:staging is not a known key"),
        ("instances.prod", KeyError, "instances has no prod"),
        ("instances.prod", 0, "instances:prod is 0"),
        ("image", "Saltyard/Hello", "image is 'Saltyard/Hello': it must be a repository path"),
        ("base", "saltyard/base", "base is 'saltyard/base': it must be <repository>:<tag>"),
        ("base", "Base:1", "base is 'Base:1'"),
        ("port", 70000, "port is 70000"),
        ("health.path", "health", "health:path is 'health': it must start with /"),
        ("colour", "blue", "release:apps:hello:colour is not a known key"),
    ],
)
def test_bad_data_is_refused_naming_the_path_and_the_value(path, value, message):
    with pytest.raises(PlanError) as refused:
        load_app("hello", changed(path, value), ENVS)
    assert message in str(refused.value)
    assert str(refused.value).startswith("pillar release:apps:hello")


def test_a_bad_app_name_is_named():
    with pytest.raises(PlanError, match="app named 'Hello_World'"):
        load_app("Hello_World", GOOD, ENVS)


@pytest.mark.parametrize("version", ["v1.4.0", "1.4.0-rc.1", "release_7"])
def test_good_versions(version):
    assert check_version(version) == version


@pytest.mark.parametrize("version", ["", ".v1", "-v1", "v1/2", "v" * 129, 1.4])
def test_bad_versions_are_named(version):
    with pytest.raises(PlanError, match="is not a valid tag"):
        check_version(version)


def test_the_base_image_is_optional():
    assert load_app("hello", GOOD, ENVS).base is None
    with_base = dict(GOOD, base="saltyard/base:bookworm")
    assert load_app("hello", with_base, ENVS).base == "saltyard/base:bookworm"
