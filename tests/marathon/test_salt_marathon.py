"""saltyard's ``marathon_api`` module and ``marathon_application`` state against a real emulator.

The modules are loaded by path with the dunders injected (tests/support/salt_loader.py, which
the unit tests' ``load`` fixture uses too). ``config.get`` answers
``marathon:url`` with the emulator's URL; the state's ``__salt__`` holds the execution module's
functions, as Salt's loader would.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import requests
from marathon_helpers import TASK_IMAGE, containers_of, state_of, wait_until

from tests.support.salt_loader import load_module

MODULE_FUNCTIONS = (
    "apps app exists create update delete restart scale tasks kill_task deployments "
    "wait_for_deployment leader info validate"
).split()


def load(kind: str, name: str, *, salt: dict[str, Any], test: bool = False) -> ModuleType:
    return load_module(kind, name, salt=salt, test=test)


@pytest.fixture
def salt_modules(emulator):
    """Factory: (execution module, state module), the state in test mode when asked."""

    def make(
        test: bool = False, image_check: bool = False, registry: ModuleType | None = None
    ) -> tuple[ModuleType, ModuleType]:
        # The task image is on the host's engine, not in a registry: the registry check is off
        # unless a test turns it on.
        config = {"marathon:url": emulator.url, "marathon:image_check": image_check}
        config_get = lambda k, d=None: config.get(k, d)  # noqa: E731
        mod = load("_modules", "marathon_api", salt={"config.get": config_get})
        assert mod.__virtual__() == "marathon_api"
        salt = {f"marathon_api.{f}": getattr(mod, f) for f in MODULE_FUNCTIONS}
        salt["config.get"] = config_get
        if registry is not None:
            salt["registry.check_image"] = registry.check_image
        state = load("_states", "marathon_application", salt=salt, test=test)
        assert state.__virtual__() == "marathon_application"
        return mod, state

    return make


def web(instances: int = 1, env: dict | None = None, **extra) -> dict[str, Any]:
    app = {
        "cmd": "exec python3 -m http.server $PORT0",
        "instances": instances,
        "cpus": 0.1,
        "mem": 64,
        "env": env or {},
        # Pre-1.5 shape on purpose: Marathon answers in the 1.5+ one, and the state must not
        # report that as a change.
        "container": {
            "type": "DOCKER",
            "docker": {
                "image": TASK_IMAGE,
                "network": "BRIDGE",
                "portMappings": [{"containerPort": 0, "hostPort": 0}],
            },
        },
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": "/",
                "portIndex": 0,
                "intervalSeconds": 1,
                "timeoutSeconds": 3,  # a loaded 2-core CI machine can be slow to answer
                "gracePeriodSeconds": 20,
                "maxConsecutiveFailures": 3,
            }
        ],
    }
    app.update(extra)
    return app


def get_app(emulator, app_id: str) -> dict | None:
    r = requests.get(f"{emulator.url}/v2/apps{app_id}", timeout=5)
    return None if r.status_code == 404 else r.json()["app"]


def running_containers(docker_client, emulator, app_id: str) -> list:
    return [
        c
        for c in containers_of(docker_client, emulator.cluster, app_id)
        if state_of(c) == "running"
    ]


def test_present_creates_converges_and_rolls_out(salt_modules, emulator, docker_client):
    _, state = salt_modules()
    ret = state.present("/salt/web", web(env={"GREETING": "hi"}), timeout=40)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["old"] is None and ret["changes"]["new"]["id"] == "/salt/web"
    app = get_app(emulator, "/salt/web")
    assert app["tasksHealthy"] == app["tasksRunning"] == 1
    assert len(running_containers(docker_client, emulator, "/salt/web")) == 1

    # Same definition again: Marathon's defaults, servicePort and shape are not changes.
    again = state.present("/salt/web", web(env={"GREETING": "hi"}), timeout=40)
    assert again == {**again, "result": True, "changes": {}}, again

    # Test mode predicts the diff and sends nothing.
    _, dry = salt_modules(test=True)
    predicted = dry.present("/salt/web", web(2, env={"GREETING": "bye"}))
    assert predicted["result"] is None
    assert predicted["changes"] == {
        "old": {"instances": 1, "env": {"GREETING": "hi"}},
        "new": {"instances": 2, "env": {"GREETING": "bye"}},
    }
    assert get_app(emulator, "/salt/web")["version"] == app["version"]

    ret = state.present("/salt/web", web(2, env={"GREETING": "bye"}), timeout=40)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    after = get_app(emulator, "/salt/web")
    assert after["version"] != app["version"]
    assert after["tasksHealthy"] == after["tasksRunning"] == 2
    tasks = requests.get(f"{emulator.url}/v2/apps/salt/web/tasks", timeout=5).json()["tasks"]
    assert {t["version"] for t in tasks} == {after["version"]}
    containers = running_containers(docker_client, emulator, "/salt/web")
    assert len(containers) == 2
    for c in containers:
        c.reload()
        assert "GREETING=bye" in c.attrs["Config"]["Env"]


@pytest.mark.parametrize(
    "app_id, change, named",
    [
        ("/salt/Bad_ID", {}, "'Bad_ID'"),
        ("/salt/neg", {"instances": -1}, "instances -1"),
        ("/salt/near", {"constraints": [["hostname", "NEAR", "x"]]}, "'NEAR'"),
        ("/salt/hc", {"healthChecks": [{"protocol": "HTTP", "portIndex": 3}]}, "portIndex 3"),
        ("/salt/noimage", {"container": {"docker": {"image": ""}}}, "image ''"),
        ("/salt/both", {"args": ["sleep", "60"]}, "args ['sleep', '60']"),
    ],
)
def test_present_refuses_bad_definitions(salt_modules, emulator, app_id, change, named):
    _, state = salt_modules()
    app = web(**change)
    if "container" in change:  # an image-less container, nothing else about it wrong
        app["container"] = {"type": "DOCKER", "docker": {"image": "", "network": "BRIDGE"}}
        app.pop("healthChecks")
    ret = state.present(app_id, app)
    assert ret["result"] is False and ret["changes"] == {}
    assert named in ret["comment"], ret["comment"]
    assert get_app(emulator, app_id) is None
    ids = [a["id"] for a in requests.get(f"{emulator.url}/v2/apps", timeout=5).json()["apps"]]
    assert app_id.lower() not in [i.lower() for i in ids]


def test_validate_accepts_a_good_definition(salt_modules):
    mod, _ = salt_modules()
    assert mod.validate({**web(), "id": "/salt/ok.v1/web-2"}) == []


def test_failed_rollout_reports_marathon_reason(salt_modules, emulator):
    _, state = salt_modules()
    broken = web(cmd="echo boom >&2; exit 3")
    # Long enough for a task to start and fail on a loaded 2-core machine (6 s was not, once in
    # a clean-clone run: no failure yet to report), short enough to keep the test quick.
    ret = state.present("/salt/broken", broken, timeout=15)
    assert ret["result"] is False
    assert "still running after 15s" in ret["comment"], ret["comment"]
    assert "last task failure" in ret["comment"], ret["comment"]
    _, cleanup = salt_modules()
    assert cleanup.absent("/salt/broken", force=True, timeout=30)["result"] is True


def test_scaled_and_absent(salt_modules, emulator, docker_client):
    mod, state = salt_modules()
    # An unknown app is refused by name, by the module and the state, and nothing is created.
    with pytest.raises(Exception, match="/salt/nosuch"):
        mod.scale("/salt/nosuch", 2)
    unknown = state.scaled("/salt/nosuch", 2)
    assert unknown["result"] is False and "/salt/nosuch" in unknown["comment"], unknown
    assert get_app(emulator, "/salt/nosuch") is None

    assert state.present("/salt/scale", web(), timeout=40)["result"] is True
    version = get_app(emulator, "/salt/scale")["version"]

    _, dry = salt_modules(test=True)
    predicted = dry.scaled("/salt/scale", 2)
    assert predicted["result"] is None
    assert predicted["changes"] == {"old": {"instances": 1}, "new": {"instances": 2}}
    assert get_app(emulator, "/salt/scale")["version"] == version

    ret = state.scaled("/salt/scale", 2, timeout=40)
    assert ret["result"] is True and ret["changes"]["new"] == {"instances": 2}, ret
    # A probe can miss on a loaded machine (alive turns False until the next one passes).
    wait_until(
        lambda: get_app(emulator, "/salt/scale")["tasksHealthy"] == 2, 15, message="2 healthy"
    )
    assert state.scaled("/salt/scale", 2)["changes"] == {}
    assert state.scaled("/salt/scale", -1)["result"] is False

    assert dry.absent("/salt/scale")["result"] is None
    assert get_app(emulator, "/salt/scale") is not None

    ret = state.absent("/salt/scale", timeout=30)
    assert ret["result"] is True and ret["changes"]["new"] is None, ret
    assert get_app(emulator, "/salt/scale") is None
    wait_until(
        lambda: not running_containers(docker_client, emulator, "/salt/scale"),
        15,
        message="/salt/scale containers to go",
    )
    again = state.absent("/salt/scale")
    assert again["result"] is True and again["changes"] == {}


def test_image_check_fails_closed_without_a_registry(salt_modules, emulator):
    """No registry module, or one with no registry configured: the app is refused, naming why
    and the pillar key that turns the check off, and Marathon never hears of it."""
    app_id = "/saltyard-it/unchecked"
    config_get = lambda k, d=None: d  # noqa: E731  (no registry:client, VIP or registry node)
    registry = load("_modules", "registry", salt={"config.get": config_get})
    for registry_module, reason in [
        (None, "saltyard's registry execution module is not loaded"),
        (registry, "no cluster registry is configured"),
    ]:
        for test in (True, False):
            _, state = salt_modules(test=test, image_check=True, registry=registry_module)
            ret = state.present(app_id, web())
            assert ret["result"] is False, ret
            assert reason in ret["comment"], ret["comment"]
            assert TASK_IMAGE in ret["comment"], ret["comment"]
            assert "marathon:image_check: False" in ret["comment"], ret["comment"]
            assert ret["changes"] == {}
            assert get_app(emulator, app_id) is None


def test_image_check_refuses_a_bad_switch(salt_modules, emulator):
    _, state = salt_modules(image_check="no")
    ret = state.present("/saltyard-it/badswitch", web())
    assert ret["result"] is False
    assert "pillar marathon:image_check is 'no'" in ret["comment"]
    assert get_app(emulator, "/saltyard-it/badswitch") is None
