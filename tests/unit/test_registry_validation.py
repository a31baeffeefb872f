"""The registry client's checks of repository names, tags, digests and image references
(distribution's reference grammar), without any HTTP."""

from __future__ import annotations

import pytest

from saltyard.clients.registry import (
    RegistryClient,
    RegistryError,
    check_digest,
    check_reference,
    check_repository,
    check_tag,
    parse_image,
)

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "web",
        "team/web",
        "a/b/c/d",
        "foo.bar",
        "foo_bar",
        "foo__bar",
        "foo-bar",
        "foo---bar",
        "v1.2/x-y_z",
        "a" * 255,
        "a/" * 127 + "a",
    ],
)
def test_valid_repository_names(name):
    assert check_repository(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Team/web",
        "team//web",
        "/web",
        "web/",
        "_web",
        "web_",
        "-web",
        "web-",
        ".web",
        "foo___bar",
        "foo..bar",
        "foo._bar",
        "foo-.bar",
        "web:1",
        "web@x",
        "web app",
        "localhost:5000/web",
        "a" * 256,
        None,
        42,
    ],
)
def test_invalid_repository_names_are_named(name):
    with pytest.raises(RegistryError) as err:
        check_repository(name)
    assert f"invalid repository name {name!r}" in str(err.value)
    assert err.value.status is None


@pytest.mark.parametrize(
    "tag", ["latest", "0", "A", "_", "_x", "1.4.2", "v1-rc.1", "release_2024.01", "a" * 128]
)
def test_valid_tags(tag):
    assert check_tag(tag) == tag
    assert check_reference(tag) == tag


@pytest.mark.parametrize(
    "tag", ["", ".x", "-x", "a" * 129, "has space", "a/b", "a:b", "a@b", "é", "x\n", None, 1.0]
)
def test_invalid_tags_are_named(tag):
    with pytest.raises(RegistryError) as err:
        check_tag(tag)
    assert f"invalid tag {tag!r}" in str(err.value)


def test_valid_digest():
    assert check_digest(f"sha256:{HEX}") == f"sha256:{HEX}"
    assert check_reference(f"sha256:{HEX}") == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "digest",
    [
        HEX,
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        f"sha256:{HEX.upper()}",
        f"sha512:{HEX}{HEX}",
        f"md5:{HEX[:32]}",
        f"sha256:{HEX[:-1]}g",
        "sha256:",
        None,
    ],
)
def test_invalid_digests_are_named(digest):
    with pytest.raises(RegistryError) as err:
        check_digest(digest)
    assert f"invalid digest {digest!r}" in str(err.value)


def test_a_reference_that_looks_like_a_digest_must_be_one():
    # "sha256:abc" is not a valid tag either (':'), but the digest message is the useful one.
    with pytest.raises(RegistryError, match="invalid digest 'sha256:abc'"):
        check_reference("sha256:abc")


@pytest.mark.parametrize(
    "image, default, expected",
    [
        ("web:1", None, ("web", "1")),
        ("team/web:1.4.2", None, ("team/web", "1.4.2")),
        (f"team/web@sha256:{HEX}", None, ("team/web", f"sha256:{HEX}")),
        ("1.4.2", "team/web", ("team/web", "1.4.2")),
        ("other/app:2", "team/web", ("other/app", "2")),
    ],
)
def test_parse_image(image, default, expected):
    assert parse_image(image, default) == expected


@pytest.mark.parametrize(
    "image, default, named",
    [
        ("team/web", None, "invalid image reference 'team/web'"),
        ("team/web", "team/web", "invalid image reference 'team/web'"),
        ("web", None, "invalid image reference 'web'"),
        ("", "team/web", "invalid image reference ''"),
        (None, None, "invalid image reference None"),
        ("team/web:-1", None, "invalid tag '-1'"),
        ("Team/web:1", None, "invalid repository name 'Team/web'"),
        ("team/web@sha256:12", None, "invalid digest 'sha256:12'"),
        ("team/web@latest", None, "invalid digest 'latest'"),
        ("localhost:5000/web:1", None, "invalid repository name 'localhost:5000/web'"),
        ("-x", "team/web", "invalid tag '-x'"),
    ],
)
def test_parse_image_names_what_is_wrong(image, default, named):
    with pytest.raises(RegistryError) as err:
        parse_image(image, default)
    assert named in str(err.value)


@pytest.mark.parametrize(
    "url, named",
    [
        ("registry:5000", "invalid registry URL 'registry:5000'"),
        ("ftp://registry", "invalid registry URL 'ftp://registry'"),
        ("https://", "invalid registry URL 'https://'"),
        ("https://ci:s3cret@registry:5000", "must not carry credentials"),
    ],
)
def test_client_refuses_unusable_urls(url, named):
    with pytest.raises(RegistryError) as err:
        RegistryClient(url)
    assert named in str(err.value)
    assert "s3cret" not in str(err.value)


def test_client_refuses_a_missing_ca_file(tmp_path):
    missing = tmp_path / "ca.pem"
    with pytest.raises(RegistryError, match=f"CA file '{missing}' does not exist"):
        RegistryClient("https://registry:5000", ca_file=str(missing))
