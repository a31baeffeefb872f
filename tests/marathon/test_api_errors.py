"""422/409/400/404 answers, deployment locks, rollback and force-cancel (raw HTTP, our client)."""

from __future__ import annotations

import pytest
import requests
from marathon_helpers import docker_app, wait_until

from saltyard.clients.marathon import (
    DeploymentFailed,
    DeploymentTimeout,
    MarathonClient,
    MarathonConflict,
    MarathonNotFound,
    MarathonValidationError,
)


@pytest.fixture(scope="module")
def ours(emulator) -> MarathonClient:
    return MarathonClient(emulator.url, timeout=10)


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"id": "/Bad_ID"}, "/id", "regular expression"),
        ({"id": "/-x"}, "/id", "regular expression"),
        ({"instances": -1}, "/instances", "expected 0 or more"),
        ({"args": ["x"]}, "/", "not both"),
        ({"constraints": [["hostname", "SOMETIMES"]]}, "/constraints(0)", "must be one of"),
        (
            {"healthChecks": [{"protocol": "HTTP", "portIndex": 3}]},
            "/healthChecks(0)",
            "port indices",
        ),
        (
            {"upgradeStrategy": {"minimumHealthCapacity": 1.5}},
            "/upgradeStrategy/minimumHealthCapacity",
            "between",
        ),
    ],
)
def test_validation_422(emulator, change, path, fragment):
    body = docker_app("/err/valid") | change
    r = requests.post(emulator.url + "/v2/apps", json=body, timeout=5)
    assert r.status_code == 422, r.text
    data = r.json()
    assert data["message"]
    match = [d for d in data["details"] if d["path"] == path]
    assert match and any(fragment in e for e in match[0]["errors"]), data


def test_client_error_carries_message_and_details(ours):
    with pytest.raises(MarathonValidationError) as err:
        ours.create_app(docker_app("/err/neg", instances=-2))
    assert err.value.status == 422
    assert err.value.details[0]["path"] == "/instances"
    assert "/instances" in str(err.value)
    with pytest.raises(MarathonNotFound, match="App '/err/none' does not exist"):
        ours.get_app("/err/none")


def test_bad_json_400(emulator):
    r = requests.post(
        emulator.url + "/v2/apps",
        data=b"{nope",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 400 and r.json()["message"] == "Invalid JSON"


def test_locked_app_409_force_rollback_and_cancel(ours, emulator):
    # a health check that never passes keeps the deployment running
    stuck = docker_app(
        "/err/locked",
        healthChecks=[
            {
                "protocol": "HTTP",
                "path": "/missing",
                "intervalSeconds": 1,
                "gracePeriodSeconds": 60,
                "timeoutSeconds": 1,
            }
        ],
    )
    created = ours.create_app(stuck)
    dep_id = created["deployments"][0]["id"]
    with pytest.raises(MarathonConflict) as err:
        ours.update_app("/err/locked", {"instances": 2})
    assert err.value.deployment_ids == [dep_id]
    with pytest.raises(MarathonConflict):
        ours.create_app(stuck)
    # wait_for_deployment times out and says why
    with pytest.raises(DeploymentTimeout) as timeout:
        ours.wait_for_deployment(dep_id, timeout=2, interval=0.5, app_id="/err/locked")
    assert "ScaleApplication /err/locked" in str(timeout.value)
    # force=true takes over the lock
    ref = ours.update_app("/err/locked", {"instances": 2}, force=True)
    assert ref.deployment_id and ref.deployment_id != dep_id
    assert {d["id"] for d in ours.list_deployments() if "/err/locked" in d["affectedApps"]} == {
        ref.deployment_id
    }
    # DELETE /v2/deployments/{id}: rollback starts a new deployment back to 1 instance
    rollback = ours.cancel_deployment(ref.deployment_id)
    assert rollback.deployment_id
    assert ours.get_app("/err/locked")["instances"] == 1
    # the superseded deployment's waiter learns it failed
    with pytest.raises(DeploymentFailed):
        ours.wait_for_deployment(
            ref.deployment_id, timeout=5, app_id="/err/locked", version=ref.version
        )
    # force cancel: 202, the deployment is gone, the app stays
    r = requests.delete(
        emulator.url + f"/v2/deployments/{rollback.deployment_id}?force=true", timeout=5
    )
    assert r.status_code == 202
    assert not [d for d in ours.list_deployments() if "/err/locked" in d["affectedApps"]]
    ref = ours.delete_app("/err/locked")
    ours.wait_for_deployment(ref.deployment_id, timeout=30)
    assert not ours.app_exists("/err/locked")


def test_unknown_deployment_404(ours):
    with pytest.raises(MarathonNotFound):
        ours.cancel_deployment("no-such-deployment")


def test_client_happy_path_and_failure_reason(ours):
    assert ours.ping() and ours.leader() and ours.info()["name"] == "marathon"
    created = ours.create_app(docker_app("/err/ok", instances=1))
    ours.wait_for_deployment(
        created["deployments"][0]["id"], timeout=30, app_id="/err/ok", version=created["version"]
    )
    task = ours.list_tasks("/err/ok")[0]
    ref = ours.kill_task("/err/ok", task["id"], scale=True)
    ours.wait_for_deployment(ref.deployment_id, timeout=30, app_id="/err/ok", version=ref.version)
    assert ours.get_app("/err/ok")["instances"] == 0
    # an image that does not exist: the timeout names the last task failure
    ref = ours.update_app(
        "/err/ok",
        {
            "instances": 1,
            "container": {
                "type": "DOCKER",
                "docker": {"image": "marathon-emu-test/absent:1", "network": "BRIDGE"},
                "portMappings": [{"containerPort": 0, "hostPort": 0}],
            },
        },
    )
    with pytest.raises(DeploymentTimeout, match="last task failure .*launch failed"):
        wait_until(lambda: ours.get_app("/err/ok").get("lastTaskFailure"), 20, message="failure")
        ours.wait_for_deployment(ref.deployment_id, timeout=1, interval=0.5, app_id="/err/ok")
    ours.delete_app("/err/ok", force=True)
