"""HTTP basic auth (MARATHON_HTTP_CREDENTIALS, as Marathon reads it) and the image policy: no pull
from a registry the emulator was not told about (--pull-from), so no lookup leaves the cluster."""

from __future__ import annotations

import copy

import pytest
import requests
from marathon_helpers import docker_app, wait_until

from saltyard.clients.marathon import MarathonClient, MarathonError


def test_basic_auth_on_every_endpoint(make_emulator):
    emu = make_emulator("auth", offset=800)
    emu.env = {"MARATHON_HTTP_CREDENTIALS": "ops:s3cret-for-test"}
    emu.auth = ("ops", "s3cret-for-test")
    emu.start()
    for path in ("/ping", "/v2/info", "/v2/apps"):
        r = requests.get(emu.url + path, timeout=5)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        wrong = requests.get(emu.url + path, auth=("ops", "wrong"), timeout=5)
        assert wrong.status_code == 401, path
        assert requests.get(emu.url + path, auth=emu.auth, timeout=5).status_code == 200
    # A refused POST creates nothing.
    r = requests.post(emu.url + "/v2/apps", json=docker_app("/auth/app"), timeout=5)
    assert r.status_code == 401
    assert MarathonClient(emu.url, auth=emu.auth).list_apps() == []
    with pytest.raises(MarathonError, match="401"):
        MarathonClient(emu.url).list_apps()


def test_image_from_an_unlisted_registry_is_not_pulled(emulator):
    app = docker_app("/images/elsewhere")
    app = copy.deepcopy(app)
    app["container"]["docker"]["image"] = "registry.invalid/nosuch:1.0"
    r = requests.post(emulator.url + "/v2/apps", json=app, timeout=5)
    assert r.status_code == 201, r.text

    def failure():
        got = requests.get(
            emulator.url + "/v2/apps/images/elsewhere",
            params={"embed": "app.lastTaskFailure"},
            timeout=5,
        ).json()["app"]
        return (got.get("lastTaskFailure") or {}).get("message")

    message = wait_until(failure, 30, message="a task failure")
    assert "'registry.invalid/nosuch:1.0' is not on agent" in message
    assert "--pull-from: none" in message
    requests.delete(emulator.url + "/v2/apps/images/elsewhere?force=true", timeout=5)
