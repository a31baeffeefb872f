"""The release's smoke test (saltyard/release/smoke.py) against the example app as a real process
on loopback (the lb in front of it is tests/lb's and the cluster's business)."""

from __future__ import annotations

import pytest

from saltyard.release.smoke import SmokeFailed, smoke
from tests.examples.test_hello_app import app  # noqa: F401 - the fixture


def test_the_expected_version_passes(app):  # noqa: F811
    _, url = app(version="1.4.0")
    assert smoke(url, "hello.fat.saltyard.test", "1.4.0", timeout=10, interval=0.05) == 5


def test_another_version_fails_naming_what_answered(app):  # noqa: F811
    _, url = app(version="1.3.9")
    with pytest.raises(SmokeFailed) as failed:
        smoke(url, "hello.fat.saltyard.test", "1.4.0", timeout=1, interval=0.1)
    message = str(failed.value)
    assert "did not answer version '1.4.0'" in message
    assert "last: HTTP 200 '1.3.9'" in message


def test_the_right_version_answering_500_does_not_pass(app):  # noqa: F811
    _, url = app(version="1.4.0", error_share=1)
    with pytest.raises(SmokeFailed, match="HTTP 500"):
        smoke(url, "hello.fat.saltyard.test", "1.4.0", timeout=1, interval=0.02)


def test_nothing_listening_fails_with_no_answer():
    with pytest.raises(SmokeFailed, match=r"last: no answer \(ConnectionError\)"):
        smoke("http://127.0.0.1:9", "hello.fat.saltyard.test", "1.4.0", timeout=0.5)
