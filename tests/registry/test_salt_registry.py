"""saltyard's ``registry`` execution module and ``registry_image`` state, loaded by Salt's own
loader (``salt.loader.minion_mods`` / ``salt.loader.states`` with ``_modules`` and ``_states``
as extra module directories), against the suite's real registry.

The connection comes from pillar ``registry:client`` as on a minion: Salt's ``config.get``
reads it, and the state reaches the module through ``__salt__``. What the registry holds is
checked with skopeo or plain requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def salt_loader(registry, tmp_path_factory):
    """Factory: (execution modules, states) as a minion with pillar ``registry:client`` sees
    them; ``test=True`` gives a loader whose states run in test mode."""
    cache = tmp_path_factory.mktemp("salt-cache")

    def make(test: bool = False, **client: str | None):
        settings = {
            "url": registry.url,
            "username": registry.username,
            "password": registry.password,
            "ca_file": str(registry.ca_file),
        }
        settings.update(client)
        settings = {k: v for k, v in settings.items() if v is not None}
        opts = salt.config.minion_config(None)
        opts.update(
            file_client="local",
            cachedir=str(cache),
            extension_modules=str(cache / "extmods"),
            module_dirs=[str(REPO / "_modules")],
            states_dirs=[str(REPO / "_states")],
            pillar={"registry": {"client": settings}},
            test=test,
        )
        utils = salt.loader.utils(opts)
        funcs = salt.loader.minion_mods(opts, utils=utils)
        states = salt.loader.states(opts, funcs, utils, salt.loader.serializers(opts))
        return funcs, states

    return make


@pytest.fixture
def salt_mods(salt_loader):
    funcs, _ = salt_loader()
    # saltyard's module, not something else answering to the name.
    assert "registry.parse" in funcs and "registry.retag" in funcs
    return funcs


# ---------------------------------------------------------------------- execution module


def test_module_reads_lists_retags_and_deletes(salt_mods, registry, push, media, raw_tags):
    catalog = salt_mods["registry.catalog"](page_size=2)
    assert set(media.values()) <= set(catalog)
    assert salt_mods["registry.tags"]("media/ociindex") == raw_tags("media/ociindex")

    digest = registry.digest_seen_by_skopeo("media/ociindex:v1")
    assert salt_mods["registry.digest"]("media/ociindex", "v1") == digest
    assert salt_mods["registry.exists"]("media/ociindex", "v1") is True
    assert salt_mods["registry.exists"]("media/ociindex", "nope") is False
    assert salt_mods["registry.parse"]("media/ociindex:v1") == {
        "repository": "media/ociindex",
        "reference": "v1",
    }

    assert salt_mods["registry.retag"]("media/ociindex", "v1", "salt-module") == {
        "source": "media/ociindex:v1",
        "target": "media/ociindex:salt-module",
        "digest": digest,
    }
    assert registry.digest_seen_by_skopeo("media/ociindex:salt-module") == digest

    push("oci", "salt/deleting:gone", source="other")
    gone = registry.digest_seen_by_skopeo("salt/deleting:gone")
    assert salt_mods["registry.delete"]("salt/deleting", gone) is True
    assert raw_tags("salt/deleting") == []


@pytest.mark.parametrize(
    "function, args, named",
    [
        ("registry.retag", ("media/oci", "v1", "bad tag"), "invalid tag 'bad tag'"),
        ("registry.retag", ("media/oci", "missing", "new"), "media/oci:missing does not exist"),
        ("registry.tags", ("UPPER/case",), "invalid repository name 'UPPER/case'"),
        ("registry.delete", ("media/oci", "sha256:123"), "invalid digest 'sha256:123'"),
        ("registry.parse", ("media/oci",), "invalid image reference 'media/oci'"),
    ],
)
def test_module_errors_name_the_bad_value(salt_mods, raw_tags, media, function, args, named):
    before = raw_tags("media/oci")
    with pytest.raises(CommandExecutionError, match=named.replace("(", r"\(")):
        salt_mods[function](*args)
    assert raw_tags("media/oci") == before


def test_module_arguments_override_pillar(salt_loader, registry, media):
    funcs, _ = salt_loader(password="stale-password")
    with pytest.raises(CommandExecutionError) as err:
        funcs["registry.tags"]("media/oci")
    assert f"wrong credentials for user 'saltyard' at {registry.url}" in str(err.value)
    assert "stale-password" not in str(err.value)
    assert "v1" in funcs["registry.tags"]("media/oci", password=registry.password)

    funcs, _ = salt_loader(url=None)
    with pytest.raises(CommandExecutionError, match="no registry URL"):
        funcs["registry.catalog"]()
    assert "media/oci" in funcs["registry.catalog"](url=registry.url)


# ---------------------------------------------------------------------- state


def test_tagged_predicts_applies_and_is_idempotent(salt_loader, registry, media, raw_tags):
    target = "media/docker:salt-stable"
    docker_digest = registry.digest_seen_by_skopeo("media/docker:v1")
    oci_digest = registry.digest_seen_by_skopeo("media/oci:v1")
    _, dry = salt_loader(test=True)
    _, states = salt_loader()
    tags_before = raw_tags("media/docker")

    # Test mode: predicts the new digest, changes nothing.
    predicted = dry["registry_image.tagged"](target, source="v1")
    assert predicted["result"] is None, predicted
    assert predicted["changes"] == {"old": None, "new": docker_digest}
    assert docker_digest in predicted["comment"]
    assert raw_tags("media/docker") == tags_before

    ret = states["registry_image.tagged"](target, source="v1")
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    assert registry.digest_seen_by_skopeo(target) == docker_digest
    assert raw_tags("media/docker") == sorted(tags_before + ["salt-stable"])

    again = states["registry_image.tagged"](target, source="media/docker:v1")
    assert again["result"] is True and again["changes"] == {}, again
    assert dry["registry_image.tagged"](target, source="v1")["changes"] == {}

    # Moving the tag to another repository's image (blobs mounted across repositories).
    predicted = dry["registry_image.tagged"](target, source="media/oci:v1")
    assert predicted["result"] is None
    assert predicted["changes"] == {"old": docker_digest, "new": oci_digest}
    assert registry.digest_seen_by_skopeo(target) == docker_digest

    ret = states["registry_image.tagged"](target, source=f"media/oci@{oci_digest}")
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == {"old": docker_digest, "new": oci_digest}
    assert registry.digest_seen_by_skopeo(target) == oci_digest
    assert registry.digest_seen_by_skopeo("media/docker:v1") == docker_digest


def test_an_immutable_tag_is_created_kept_and_never_moved(salt_loader, registry, media, raw_tags):
    """A release version (``immutable: True``): made once, found again, refused when asked to
    name another digest, in test mode too, and left as it was."""
    target = "media/docker:1.4.0"
    docker_digest = registry.digest_seen_by_skopeo("media/docker:v1")
    oci_digest = registry.digest_seen_by_skopeo("media/oci:v1")
    _, dry = salt_loader(test=True)
    _, states = salt_loader()

    predicted = dry["registry_image.tagged"](target, source="v1", immutable=True)
    assert predicted["result"] is None and predicted["changes"]["new"] == docker_digest
    made = states["registry_image.tagged"](target, source="v1", immutable=True)
    assert made["result"] is True and made["changes"] == {"old": None, "new": docker_digest}
    again = states["registry_image.tagged"](target, source="media/docker:v1", immutable=True)
    assert again["result"] is True and again["changes"] == {}

    tags_before = raw_tags("media/docker")
    for test in (True, False):
        _, st = salt_loader(test=test)
        moved = st["registry_image.tagged"](target, source="media/oci:v1", immutable=True)
        assert moved["result"] is False and moved["changes"] == {}, moved
        assert (
            f"media/docker:1.4.0 already names {docker_digest}, not {oci_digest}"
            in (moved["comment"])
        )
        assert "never moved" in moved["comment"]
    assert registry.digest_seen_by_skopeo(target) == docker_digest
    assert raw_tags("media/docker") == tags_before


@pytest.mark.parametrize(
    "name, source, named",
    [
        ("media/oci:-bad", "v1", "invalid tag '-bad'"),
        ("media/oci:" + "t" * 129, "v1", "invalid tag '" + "t" * 129 + "'"),
        ("Media/oci:ok", "v1", "invalid repository name 'Media/oci'"),
        ("media/oci", "v1", "invalid image reference 'media/oci'"),
        ("media/oci:ok", "media/oci:no-such-tag", "media/oci:no-such-tag does not exist in"),
        ("media/oci:ok", "no-such-tag", "media/oci:no-such-tag does not exist in"),
        ("media/oci:ok", "", "no source given"),
        ("media/oci:ok", "media/oci:bad tag", "invalid tag 'bad tag'"),
        ("media/oci@sha256:" + "a" * 64, "v1", "not a digest"),
    ],
)
def test_tagged_refuses_bad_input_before_changing_anything(
    salt_loader, raw_tags, media, name, source, named
):
    before = raw_tags("media/oci")
    for test in (True, False):
        _, states = salt_loader(test=test)
        ret = states["registry_image.tagged"](name, source=source)
        assert ret["result"] is False and ret["changes"] == {}, ret
        assert named in ret["comment"], ret["comment"]
    assert raw_tags("media/oci") == before


def test_tagged_with_wrong_credentials_fails_clearly(salt_loader, registry, media, raw_tags):
    before = raw_tags("media/oci")
    _, states = salt_loader()
    ret = states["registry_image.tagged"]("media/oci:intruder", source="v1", password="wrong")
    assert ret["result"] is False and ret["changes"] == {}
    assert f"wrong credentials for user 'saltyard' at {registry.url}" in ret["comment"]
    assert raw_tags("media/oci") == before
