"""tests/support/components.py: a missing real component skips a test on a developer's machine
and fails the run under CI=true, naming the component; other skips stay skips. Run through
pytest itself (``pytester``) on small test files."""

from __future__ import annotations

import pytest

MISSING = """
from tests.support.components import require, require_program

def test_needs_an_engine():
    require("Docker engine", "no engine answers on /var/run/docker.sock")

def test_needs_a_program():
    require_program("saltyard-no-such-program", "no-such-package")

def test_needs_profile_full():
    import pytest
    pytest.skip("needs agent-uat and agent-prod (profile full)")
"""


@pytest.fixture
def run(pytester, monkeypatch):
    pytester.makepyfile(test_missing=MISSING)

    def _run(ci: str | None):
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        return pytester.runpytest("-rsf", "-p", "no:cacheprovider")

    return _run


def test_missing_components_skip_without_ci(run):
    result = run(None)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*missing component Docker engine: no engine answers on /var/run/docker.sock*",
            "*missing component saltyard-no-such-program: saltyard-no-such-program is not "
            "installed (no-such-package)*",
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_missing_components_fail_under_ci_naming_them(run):
    result = run("true")
    # The profile skip is not about a missing component: it stays a skip.
    result.assert_outcomes(failed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*needs agent-uat and agent-prod (profile full)*",
            "FAILED*test_needs_an_engine*missing component Docker engine*CI=true*",
            "FAILED*test_needs_a_program*missing component saltyard-no-such-program*CI=true*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_ci_other_than_true_keeps_skips(run):
    run("false").assert_outcomes(skipped=3)
