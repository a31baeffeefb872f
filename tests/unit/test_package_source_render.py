"""The package sources of mesos and consul, rendered by Salt on the host with the example
production site's pillar: the keyring each source line names is written by a state from an
https URL with its fingerprints checked, before the source is added; and the refusals."""

from __future__ import annotations

import copy

import pytest

from tests.state_render import RenderRefused, StateRenderer, state_args

SECRETS = {
    "pki": {"ca": "CA", "node": {"cert": "CERT", "key": "KEY"}},
    "consul": {
        "encrypt": "not-a-key",
        "acl": {
            "master_token": "m",
            "tokens": {
                "agent": "a",
                "lb": "b",
                "discovery": "d",
                "release": "r",
                "ipam": "i",
                "ipam_read": "j",
            },
        },
    },
}


@pytest.fixture(scope="module")
def control1(tmp_path_factory) -> StateRenderer:
    return StateRenderer(
        tmp_path_factory.mktemp("render-prod-control1"),
        "control1",
        site="example-prod",
        pillar=SECRETS,
    )


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> StateRenderer:
    # Not a Consul server: consul.acl (the first server's) reads files outside states/.
    return StateRenderer(
        tmp_path_factory.mktemp("render-prod-agent"),
        "agent-fat",
        site="example-prod",
        pillar=SECRETS,
        # A production host, not a container: the site's host sysctls are allowed there.
        grains={"virtual": "physical"},
    )


def test_mesos_keyring_is_fetched_over_https_and_checked(control1):
    rendered = control1.show_sls("mesos.package")
    keyring = state_args(rendered, "mesos-package-keyring")
    assert keyring["fun"] == "apt_keyring.present"
    assert keyring["name"] == "/usr/share/keyrings/mesos.gpg"
    assert keyring["source"] == "https://packages.example.internal/mesos/mesos.gpg"
    assert keyring["fingerprints"] == ["0123456789ABCDEF0123456789ABCDEF01234567"]
    assert state_args(rendered, "mesos-package-keyring-gpg")["name"] == "gpg"
    source = state_args(rendered, "mesos-package-source")
    assert "signed-by=/usr/share/keyrings/mesos.gpg] https://" in source["name"]
    assert {"apt_keyring": "mesos-package-keyring"} in [dict(r) for r in source["require"]]
    assert "key_url" not in source


def test_consul_keyring_is_fetched_over_https_and_checked(agent):
    rendered = agent.show_sls("consul")
    keyring = state_args(rendered, "consul-apt-keyring")
    assert keyring["name"] == "/usr/share/keyrings/saltyard-consul.gpg"
    assert keyring["source"].startswith("https://")
    source = state_args(rendered, "consul-apt-source")
    assert source["contents"].startswith("deb [signed-by=/usr/share/keyrings/saltyard-consul.gpg]")
    assert {"apt_keyring": "consul-apt-keyring"} in [dict(r) for r in source["require"]]


def test_the_local_site_needs_no_keyring(tmp_path):
    """Debian's bullseye suite is signed by Debian's keyring, which apt already has."""
    local = StateRenderer(tmp_path, "agent-fat", pillar=SECRETS)
    rendered = local.show_sls("consul")
    assert "consul-apt-keyring" not in rendered
    assert "require" not in state_args(rendered, "consul-apt-source")


MESOS = {
    "repo": "deb [signed-by=/usr/share/keyrings/mesos.gpg] https://p.example.internal/m bookworm",
    "keyring": {
        "path": "/usr/share/keyrings/mesos.gpg",
        "source": "https://p.example.internal/m/mesos.gpg",
        "fingerprints": ["0123456789ABCDEF0123456789ABCDEF01234567"],
    },
}


def _with(change: dict) -> dict:
    source = copy.deepcopy(MESOS)
    for key, value in change.items():
        if key == "repo":
            source["repo"] = value
        else:
            source["keyring"][key] = value
    return {"mesos": {"package_source": source}}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"source": "http://p.example.internal/m/mesos.gpg"},
            'pillar mesos:package_source:keyring:source "http://p.example.internal/m/mesos.gpg"'
            " must be an https:// (or salt://) URL",
        ),
        ({"fingerprints": []}, "pillar mesos:package_source:keyring:fingerprints is empty"),
        (
            {"path": "/usr/share/keyrings/other.gpg"},
            'keyring:path "/usr/share/keyrings/other.gpg" must be the keyring the source line '
            'names with signed-by ("/usr/share/keyrings/mesos.gpg")',
        ),
        (
            {"source": "", "path": ""},
            "pillar mesos:package_source names keyring /usr/share/keyrings/mesos.gpg (signed-by)"
            " but no state writes it",
        ),
    ],
)
def test_bad_keyring_is_refused_by_name(control1, change, message):
    with pytest.raises(RenderRefused) as refused:
        control1.show_sls("mesos.package", pillar=_with(change))
    assert message in str(refused.value)
