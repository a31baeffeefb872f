"""``saltyard.clients.registry.RegistryClient`` against a real registry (distribution 2.8).

What the registry holds is checked with skopeo or plain requests, never through the client
under test; what the client sent is read from its session's response hook.
"""

from __future__ import annotations

import json

import pytest
import requests
from registry_helpers import KINDS
from registry_server import LocalRegistry, free_port, make_tls

from saltyard.clients import registry as rc


def catalog_in_one_request(registry) -> list[str]:
    r = requests.get(
        f"{registry.url}/v2/_catalog",
        params={"n": 1000},  # distribution refuses more (catalog.maxentries)
        auth=(registry.username, registry.password),
        verify=str(registry.ca_file),
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["repositories"]


# ---------------------------------------------------------------------- listing


def test_catalog_follows_every_page(client, recorder, registry, push, media):
    for i in range(5):
        push("oci", f"paging/repo{i}:v1")
    everything = catalog_in_one_request(registry)
    assert len(everything) >= 9  # 4 media repos + 5 here

    recorder.clear()
    assert client.catalog(page_size=2) == everything
    pages = [c for c in recorder.calls if c.path == "/v2/_catalog"]
    # Two names per page: the client followed Link: rel="next" until the registry stopped.
    assert len(pages) >= len(everything) // 2
    assert all("n=2" in c.query for c in pages), [c.query for c in pages]
    assert all("last=" in c.query for c in pages[1:]), [c.query for c in pages]


def test_tags_with_a_page_size_returns_every_tag(client, recorder, push, raw_tags):
    tags = [f"t{i}" for i in range(6)]
    for tag in tags:
        push("oci", f"paging/tags:{tag}")
    assert raw_tags("paging/tags") == tags

    recorder.clear()
    assert sorted(client.tags("paging/tags", page_size=2)) == tags
    pages = [c for c in recorder.calls if c.path == "/v2/paging/tags/tags/list"]
    assert pages and all("n=2" in c.query for c in pages)
    # distribution 2.8 ignores n on tags/list and answers every tag in one page (3.x pages);
    # the client follows the same Link header as for the catalog when there is one.
    assert len(pages) == 1


def test_tags_of_a_missing_repository_names_it(client, registry):
    with pytest.raises(rc.RegistryError) as err:
        client.tags("never/pushed")
    assert err.value.status == 404 and err.value.code == "NAME_UNKNOWN"
    assert f"repository never/pushed does not exist in {registry.url}" in str(err.value)


# ---------------------------------------------------------------------- reading manifests


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_and_digest_match_skopeo(kind, client, recorder, registry, media):
    repo = media[kind]
    raw = registry.raw_manifest(f"{repo}:v1")
    expected = registry.digest_seen_by_skopeo(f"{repo}:v1")

    manifest = client.manifest(repo, "v1")
    assert manifest.media_type == KINDS[kind][0]
    assert manifest.raw == raw and manifest.digest == expected
    assert json.loads(raw).get("mediaType", KINDS[kind][0]) == KINDS[kind][0]
    assert client.manifest(repo, expected).raw == raw  # by digest, verified against it

    recorder.clear()
    assert client.manifest_digest(repo, "v1") == expected
    (head,) = recorder.calls
    assert head.method == "HEAD" and head.received == 0
    accepted = {t.strip() for t in head.headers["Accept"].split(",")}
    assert accepted == set(rc.MANIFEST_TYPES)

    assert client.exists(repo, "v1") is True
    assert client.exists(repo, "no-such-tag") is False


# ---------------------------------------------------------------------- retag


@pytest.mark.parametrize("kind", KINDS)
def test_retag_keeps_the_digest_and_moves_only_the_manifest(
    kind, client, recorder, registry, media, raw_tags
):
    repo = media[kind]
    before = registry.digest_seen_by_skopeo(f"{repo}:v1")
    raw = registry.raw_manifest(f"{repo}:v1")

    recorder.clear()
    assert client.retag(repo, "v1", f"promoted-{kind}") == before

    assert registry.raw_manifest(f"{repo}:promoted-{kind}") == raw
    assert registry.digest_seen_by_skopeo(f"{repo}:promoted-{kind}") == before
    assert registry.digest_seen_by_skopeo(f"{repo}:v1") == before
    assert f"promoted-{kind}" in raw_tags(repo)
    # One GET and one PUT of the manifest; no blob request, no byte but the manifest's.
    assert recorder.summary() == [
        ("GET", f"/v2/{repo}/manifests/v1"),
        ("PUT", f"/v2/{repo}/manifests/promoted-{kind}"),
    ]
    put = recorder.calls[1]
    assert put.headers["Content-Type"] == KINDS[kind][0]
    assert sum(c.sent for c in recorder.calls) == put.sent == len(raw)

    # Again: the same bytes, the same digest, nothing else.
    assert client.retag(repo, "v1", f"promoted-{kind}") == before


def test_retag_from_a_digest(client, registry, media):
    repo = media["oci"]
    digest = registry.digest_seen_by_skopeo(f"{repo}:v1")
    assert client.retag(repo, digest, "by-digest") == digest
    assert registry.digest_seen_by_skopeo(f"{repo}:by-digest") == digest


@pytest.mark.parametrize("kind", KINDS)
def test_retag_into_another_repository_mounts_blobs(
    kind, client, recorder, registry, media, tmp_path
):
    repo, target = media[kind], f"promoted/{kind}"
    before = registry.digest_seen_by_skopeo(f"{repo}:v1")

    recorder.clear()
    assert client.retag(repo, "v1", "release", target_repository=target) == before

    assert registry.digest_seen_by_skopeo(f"{target}:release") == before
    blob_calls = [c for c in recorder.calls if "/blobs/" in c.path]
    assert blob_calls and all(
        c.method == "POST" and "mount=" in c.query and c.sent == 0 and c.status == 201
        for c in blob_calls
    ), blob_calls
    manifests = [c for c in recorder.calls if "/manifests/" in c.path]
    assert sum(c.sent for c in recorder.calls) == sum(c.sent for c in manifests)
    # Every blob of every platform is readable from the new repository.
    registry.skopeo(
        "copy",
        "--quiet",
        "--all",
        *registry.src_flags(),
        registry.docker_ref(f"{target}:release"),
        f"dir:{tmp_path / 'copy'}",
    )


# ---------------------------------------------------------------------- delete


def test_delete_by_digest_removes_the_tag(client, registry, push, raw_tags):
    push("oci", "deleting/web:doomed")
    push("oci", "deleting/web:kept", source="other")
    digest = registry.digest_seen_by_skopeo("deleting/web:doomed")

    client.delete("deleting/web", digest)

    assert raw_tags("deleting/web") == ["kept"]
    assert client.exists("deleting/web", "doomed") is False
    with pytest.raises(AssertionError, match="manifest unknown"):
        registry.raw_manifest("deleting/web:doomed")
    with pytest.raises(rc.RegistryError) as err:
        client.delete("deleting/web", digest)
    assert err.value.status == 404 and f"deleting/web@{digest} does not exist" in str(err.value)


def test_delete_names_the_setting_when_the_registry_refuses(tmp_path, layout):
    with LocalRegistry(tmp_path / "no-delete", delete_enabled=False) as server:
        server.skopeo(
            "copy",
            "--quiet",
            *server.dest_flags(),
            f"oci:{layout.root}:single",
            server.docker_ref("kept/web:v1"),
        )
        digest = server.digest_seen_by_skopeo("kept/web:v1")
        client = rc.RegistryClient(
            server.url,
            username=server.username,
            password=server.password,
            ca_file=str(server.ca_file),
        )
        with pytest.raises(rc.RegistryError) as err:
            client.delete("kept/web", digest)
        assert err.value.status == 405
        assert "storage.delete.enabled: true" in str(err.value)
        assert client.tags("kept/web") == ["v1"]


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "call, bad",
    [
        (lambda c: c.retag("media/oci", "v1", "-leading-dash"), "'-leading-dash'"),
        (lambda c: c.retag("media/oci", "v1", ".dot"), "'.dot'"),
        (lambda c: c.retag("media/oci", "v1", "has space"), "'has space'"),
        (lambda c: c.retag("media/oci", "v1", "x" * 129), "'" + "x" * 129 + "'"),
        (lambda c: c.retag("media/oci", "v1", ""), "''"),
        (lambda c: c.retag("media/oci", "v 1", "ok"), "'v 1'"),
        (lambda c: c.retag("Media/oci", "v1", "ok"), "'Media/oci'"),
        (lambda c: c.retag("media/oci", "v1", "ok", target_repository="a//b"), "'a//b'"),
        (lambda c: c.delete("media/oci", "sha256:abc"), "'sha256:abc'"),
        (lambda c: c.delete("media/oci", "v1"), "'v1'"),
        (lambda c: c.put_manifest("media/oci", "x", "text/plain", b"{}"), "'text/plain'"),
    ],
)
def test_invalid_input_is_refused_before_any_request(call, bad, client, recorder, media, raw_tags):
    before = raw_tags("media/oci")
    recorder.clear()
    with pytest.raises(rc.RegistryError) as err:
        call(client)
    assert bad in str(err.value)
    assert recorder.calls == []
    assert raw_tags("media/oci") == before


def test_missing_source_tag_is_named_and_changes_nothing(client, recorder, registry, media):
    before = catalog_in_one_request(registry), client.tags("media/oci")
    recorder.clear()
    with pytest.raises(rc.RegistryError) as err:
        client.retag("media/oci", "no-such-tag", "new")
    assert str(err.value).startswith(f"media/oci:no-such-tag does not exist in {registry.url}")
    assert err.value.code == "MANIFEST_UNKNOWN"
    assert [c.method for c in recorder.calls] == ["GET"]
    with pytest.raises(rc.RegistryError, match="never/pushed:v1 does not exist"):
        client.retag("never/pushed", "v1", "new")
    assert (catalog_in_one_request(registry), client.tags("media/oci")) == before


def test_wrong_credentials_are_named_and_change_nothing(make_client, registry, media, raw_tags):
    before = raw_tags("media/oci")
    wrong = make_client(password="not-the-password")
    with pytest.raises(rc.RegistryError) as err:
        wrong.retag("media/oci", "v1", "by-intruder")
    assert err.value.status == 401
    assert f"wrong credentials for user 'saltyard' at {registry.url}" in str(err.value)
    assert "not-the-password" not in str(err.value)

    anonymous = make_client(username=None, password=None)
    with pytest.raises(rc.RegistryError, match="requires credentials and none were given"):
        anonymous.catalog()
    assert raw_tags("media/oci") == before


def test_a_foreign_ca_fails_tls_verification(make_client, registry, tmp_path):
    other_ca, _, _ = make_tls(tmp_path / "other")
    with pytest.raises(rc.RegistryError, match=f"TLS verification of {registry.url} failed"):
        make_client(ca_file=str(other_ca)).catalog()
    with pytest.raises(rc.RegistryError, match="CA file '/nonexistent/ca.pem' does not exist"):
        make_client(ca_file="/nonexistent/ca.pem")


def test_no_answer_names_the_registry():
    url = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(rc.RegistryError, match=f"no answer from registry {url}"):
        rc.RegistryClient(url, timeout=2).catalog()


def test_proxy_settings_are_read_from_the_environment_once(registry, monkeypatch):
    """HTTPS_PROXY and NO_PROXY count as they were when the client was made."""
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HTTPS_PROXY", dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    def make() -> rc.RegistryClient:
        return rc.RegistryClient(
            registry.url,
            username=registry.username,
            password=registry.password,
            ca_file=str(registry.ca_file),
            timeout=2,
        )

    proxied = make()
    with pytest.raises(rc.RegistryError, match=f"no answer from registry {registry.url}"):
        proxied.catalog()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    bypassing = make()
    assert bypassing.ping() is True
    with pytest.raises(rc.RegistryError, match="no answer"):
        proxied.catalog()  # made before NO_PROXY was set
    monkeypatch.delenv("NO_PROXY")
    assert bypassing.ping() is True
