"""_pillar/saltyard_secrets.py with the shipped catalogue (salt/secrets.yaml) and inventory."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"unit_secrets_{name}", REPO / "_pillar" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def render(tmp_path):
    inventory, secrets = _load("saltyard_inventory"), _load("saltyard_secrets")

    def run(minion: str) -> dict:
        base = inventory.ext_pillar(minion, {}, str(REPO / "salt" / "inventory.yaml"))
        return secrets.ext_pillar(
            minion, base, str(REPO / "salt" / "secrets.yaml"), str(tmp_path / "store")
        )

    run.store = tmp_path / "store"
    return run


def test_served_by_role_only(render):
    control, registry, agent, lb = (
        render(n) for n in ("control1", "registry1", "agent-fat", "lb1")
    )
    assert control["marathon"]["http_credentials"]["password"]
    assert "marathon" not in registry and "marathon" not in agent
    assert set(registry["registry"]["users"]) == {"pull", "push"}
    assert registry["registry"]["http_secret"]
    # Pullers get the pull password as their client setting, never the push one or the secret.
    assert agent["registry"]["client"]["password"] == registry["registry"]["users"]["pull"]
    assert "push" not in agent["registry"].get("users", {})
    assert "http_secret" not in agent["registry"]
    assert set(lb) == {"consul"}  # only its Consul key and tokens


def test_values_stable_random_and_private(render):
    first, again = render("registry1"), render("registry2")
    assert first["registry"]["http_secret"] == again["registry"]["http_secret"]
    users = first["registry"]["users"]
    assert users["pull"] != users["push"] and len(users["pull"]) >= 32
    for path in render.store.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_no_value_in_the_repository(render):
    values = [render("registry1")["registry"]["http_secret"]]
    values += list(render("registry1")["registry"]["users"].values())
    for path in REPO.rglob("*"):
        if any(part in {".git", ".venv", ".state", "node_modules"} for part in path.parts):
            continue
        if path.is_file() and path.stat().st_size < 2_000_000:
            text = path.read_bytes()
            for value in values:
                assert value.encode() not in text, path


def test_needs_roles(tmp_path):
    secrets = _load("saltyard_secrets")
    with pytest.raises(ValueError, match="saltyard_inventory before saltyard_secrets"):
        secrets.ext_pillar("lb1", {}, str(REPO / "salt" / "secrets.yaml"), str(tmp_path))


def test_formats(render):
    import base64
    import uuid

    control = render("control1")
    key = base64.b64decode(control["consul"]["encrypt"], validate=True)
    assert len(key) == 32
    tokens = control["consul"]["acl"]["tokens"]
    for value in [control["consul"]["acl"]["master_token"], *tokens.values()]:
        assert uuid.UUID(value).version == 4
    # Only servers hold the master token and the other roles' tokens.
    lb = render("lb1")["consul"]
    assert "master_token" not in lb["acl"]
    assert set(lb["acl"]["tokens"]) == {"agent", "lb"}


def test_unknown_format_named(tmp_path):
    secrets = _load("saltyard_secrets")
    catalogue = tmp_path / "secrets.yaml"
    catalogue.write_text("x:\n  pillar: a:b\n  roles: [base]\n  format: hex\n")
    with pytest.raises(ValueError, match="'x': unknown format 'hex'"):
        secrets.ext_pillar("lb1", {"saltyard": {"roles": ["base"]}}, str(catalogue), str(tmp_path))


def test_registry_client_credentials_follow_the_roles(render):
    """build1 promotes images (registry.retag): its client is the push user; the pullers' is
    pull; each with that user's own password."""
    users = render("registry1")["registry"]["users"]
    build, agent, control, registry = (
        render(n)["registry"] for n in ("build1", "agent-fat", "control1", "registry1")
    )
    assert build["client"] == {"username": "push", "password": users["push"]}
    for puller in (agent, control, registry):
        assert puller["client"] == {"username": "pull", "password": users["pull"]}
    # The build node never holds the pull password, the pullers never the push one.
    assert "pull" not in build["users"] and "push" not in agent["users"]
    # lb1 uses no registry: no client credentials.
    assert "registry" not in render("lb1")


def test_registry_module_connects_with_the_credentials_given(render, load, tmp_path):
    """The registry module on build1 (site pillar merged with the master's ext_pillar, as Salt
    merges them) authenticates as push with push's password."""
    import base64

    import salt.utils.dictupdate
    import yaml

    site = yaml.safe_load((REPO / "pillar" / "sites" / "local.sls").read_text())
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("")
    site["registry"]["client"]["ca_file"] = str(ca_file)
    for node, user in (("build1", "push"), ("agent-fat", "pull")):
        pillar = salt.utils.dictupdate.merge(
            yaml.safe_load(yaml.safe_dump(site)), render(node), strategy="smart"
        )

        def config_get(key, default=None, pillar=pillar):
            value = pillar
            for part in key.split(":"):
                if not isinstance(value, dict) or part not in value:
                    return default
                value = value[part]
            return value

        registry = load("_modules", "registry", salt={"config.get": config_get})
        client = registry._client()
        password = render("registry1")["registry"]["users"][user]
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        assert client.username == user
        assert client._headers["authorization"] == f"Basic {expected}"
        assert client.base_url == "https://172.30.0.200:5000"  # the VIP from the site pillar


def test_a_bad_pillar_place_is_named(tmp_path):
    secrets = _load("saltyard_secrets")
    catalogue = tmp_path / "secrets.yaml"
    catalogue.write_text("x:\n  pillar: [{paht: a:b}]\n  roles: [base]\n")
    with pytest.raises(ValueError, match=r"'x': a pillar place needs path .* got \['paht'\]"):
        secrets.ext_pillar("lb1", {"saltyard": {"roles": ["base"]}}, str(catalogue), str(tmp_path))
