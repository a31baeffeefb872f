"""The Marathon apps of a release (saltyard/release/apps.py): valid for Marathon's rules, and
labelled so the bridge and the lb put stable and canary under one name."""

from __future__ import annotations

import pytest

from saltyard.bridge.registrations import LABEL_SERVICE, LABEL_TRACK
from saltyard.marathon_appdef import validate_app
from saltyard.release import apps
from saltyard.release.plan import load_app
from tests.unit.test_release_plan import ENVS, GOOD

PLAN = load_app("hello", GOOD, ENVS)
IMAGE = "172.30.0.200:5000/saltyard/hello:1.4.0"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("track", [apps.STABLE, apps.CANARY])
def test_every_definition_passes_marathons_rules(env, track):
    app = apps.definition(PLAN, env, IMAGE, "1.4.0", track=track)
    assert validate_app(app) == []
    assert app["constraints"] == [["env", "CLUSTER", env]]
    assert app["instances"] == GOOD["instances"][env]


def test_stable_and_canary_share_the_service_and_differ_by_track():
    stable = apps.definition(PLAN, "prod", IMAGE, "1.3.0")
    canary = apps.definition(PLAN, "prod", IMAGE, "1.4.0", track=apps.CANARY, instances=1)
    assert (stable["id"], canary["id"]) == ("/prod/hello", "/prod/hello-canary")
    assert stable["labels"][LABEL_SERVICE] == canary["labels"][LABEL_SERVICE] == "hello"
    assert (stable["labels"][LABEL_TRACK], canary["labels"][LABEL_TRACK]) == ("stable", "canary")
    assert canary["instances"] == 1
    assert canary["labels"]["saltyard.version"] == "1.4.0"


def test_the_app_listens_on_its_container_port_behind_dockers_bridge():
    app = apps.definition(PLAN, "fat", IMAGE, "1.4.0")
    assert app["env"]["CONTAINER_PORT"] == str(GOOD["port"])
    assert app["container"]["portMappings"][0]["containerPort"] == GOOD["port"]
    assert app["healthChecks"][0]["path"] == GOOD["health"]["path"]
    # Upgrades never go below full healthy capacity.
    assert app["upgradeStrategy"]["minimumHealthCapacity"] == 1.0


def test_an_environment_without_a_count_and_a_bad_track_are_refused():
    with pytest.raises(ValueError, match="no instance count for environment 'staging'"):
        apps.definition(PLAN, "staging", IMAGE, "1.4.0")
    with pytest.raises(ValueError, match="track 'beta'"):
        apps.app_id("hello", "prod", "beta")
