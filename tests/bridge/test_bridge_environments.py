"""The cluster's environments in the bridge (the inventory's cluster.environments, passed as
``--environments``): the setting is parsed and checked, and an app in an environment outside
the list is skipped as ``unknown_env``, counted, with a reason naming the environment."""

from __future__ import annotations

import pytest

from saltyard.bridge.registrations import UNKNOWN_ENV, desired_registrations
from saltyard.bridge.settings import SettingsError, build_parser, parse_settings


def settings(*argv: str):
    return parse_settings(build_parser().parse_args(["--marathon", "http://m", *argv]), {})


def web(env: str) -> dict:
    task = {
        "id": "shop_web.1",
        "host": "agent-x",
        "ports": [31001],
        "state": "TASK_RUNNING",
        "version": "2024-01-01T00:00:00.000Z",
        "healthCheckResults": [{"alive": True}],
    }
    return {
        "id": "/shop/web",
        "version": "2024-01-01T00:00:00.000Z",
        "constraints": [["env", "CLUSTER", env]],
        "healthChecks": [{"protocol": "HTTP"}],
        "tasks": [task],
    }


def resolve(host: str) -> str:
    return "10.0.0.7"


def test_environments_default_to_the_inventory_default():
    assert settings().environments == ("fat", "uat", "prod")


def test_environments_are_parsed_in_order():
    s = settings("--environments", "fat,uat,staging,prod", "--default-env", "staging")
    assert s.environments == ("fat", "uat", "staging", "prod")
    assert s.default_env == "staging"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "--environments ''"),
        ("fat,,prod", "--environments 'fat,,prod'"),
        ("fat,Staging", "'Staging' is not a DNS label"),
        ("fat,uat,fat", "'fat' is listed twice"),
    ],
)
def test_bad_environments_are_refused_naming_the_value(value, message):
    with pytest.raises(SettingsError, match=message):
        settings("--environments", value)


def test_a_default_env_outside_the_environments_is_refused():
    with pytest.raises(SettingsError, match="--default-env 'staging' is not one of"):
        settings("--environments", "fat,prod", "--default-env", "staging")


def test_an_app_in_an_unknown_environment_is_skipped_with_its_name():
    plan = desired_registrations(web("staging"), resolve, None, ("fat", "uat", "prod"))
    assert plan.skip_reason == UNKNOWN_ENV and plan.registrations == []
    assert "'staging'" in plan.skip_detail and "fat, uat, prod" in plan.skip_detail
    # The same app once the cluster has that environment.
    plan = desired_registrations(web("staging"), resolve, None, ("fat", "staging", "prod"))
    assert plan.skip_reason is None
    assert [r.tags for r in plan.registrations][0][0] == "env:staging"


def test_the_daemon_counts_an_unknown_environment_skip():
    from saltyard.bridge.daemon import Bridge

    bridge = Bridge(settings("--environments", "fat,prod", "--host-address", "agent-x=10.0.0.7"))
    assert bridge._plan(web("uat")) == {}
    assert bridge._plan(web("uat")) == {}  # counted once per app and reason, not per resync
    assert bridge.metrics.get("skipped_apps", UNKNOWN_ENV) == 1
    assert bridge._plan(web("prod")) != {}
