"""Fixtures for the registry suite: one real registry (distribution 2.8, TLS, htpasswd, deletes
enabled) on 127.0.0.1 for the session, test images pushed into it with skopeo from an OCI
layout written here, and a client whose requests are recorded.

Images are pushed once in each of the four manifest types the client handles; tests that change
tags use their own tag or repository names, so they do not depend on each other's order.
"""

from __future__ import annotations

import os

import pytest
import requests
from oci_layout import OciLayout
from registry_helpers import KINDS, Recorder
from registry_server import LocalRegistry

from saltyard.clients import registry as rc
from tests.support.components import require_program


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    for program, package in (
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("htpasswd", "apache2-utils"),
    ):
        require_program(program, package)
    server = LocalRegistry(tmp_path_factory.mktemp("registry"))
    server.start()
    yield server
    server.stop()
    if os.environ.get("REGISTRY_LOG"):
        print(server.log_tail(20000))


@pytest.fixture(scope="session")
def layout(tmp_path_factory) -> OciLayout:
    oci = OciLayout(tmp_path_factory.mktemp("oci-layout"))
    amd64 = oci.add_image({"hello": b"hello from amd64\n"}, "amd64")
    arm64 = oci.add_image({"hello": b"hello from arm64\n"}, "arm64")
    oci.tag("single", amd64)
    oci.tag("multi", oci.add_index([amd64, arm64]))
    oci.tag("other", oci.add_image({"hello": b"another image\n"}, "amd64"))
    return oci


@pytest.fixture(scope="session")
def push(registry, layout):
    """push(kind, "repo:tag") copies the layout's image of that kind into the registry."""

    def _push(kind: str, image: str, source: str | None = None) -> None:
        _, flags, name = KINDS[kind]
        registry.skopeo(
            "copy",
            "--quiet",
            *flags,
            *registry.dest_flags(),
            f"oci:{layout.root}:{source or name}",
            registry.docker_ref(image),
        )

    return _push


@pytest.fixture(scope="session")
def media(push) -> dict[str, str]:
    """kind -> a repository holding tag v1 of that manifest type (never changed by tests)."""
    repos = {}
    for kind in KINDS:
        push(kind, f"media/{kind}:v1")
        repos[kind] = f"media/{kind}"
    return repos


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(registry, recorder):
    """Factory: a RegistryClient for the test registry whose requests land in ``recorder``;
    keyword arguments replace the working settings (a wrong password, no CA, ...)."""

    def make(**overrides) -> rc.RegistryClient:
        settings = {
            "username": registry.username,
            "password": registry.password,
            "ca_file": str(registry.ca_file),
        }
        settings.update(overrides)
        return rc.RegistryClient(registry.url, on_response=recorder.hook, **settings)

    return make


@pytest.fixture
def client(make_client) -> rc.RegistryClient:
    return make_client()


@pytest.fixture
def raw_tags(registry):
    """The tags of a repository read without the client under test (None: no repository)."""

    def read(repository: str) -> list[str] | None:
        r = requests.get(
            f"{registry.url}/v2/{repository}/tags/list",
            auth=(registry.username, registry.password),
            verify=str(registry.ca_file),
            timeout=10,
        )
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return sorted(r.json().get("tags") or [])

    return read
