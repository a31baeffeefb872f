"""Tests for _modules/kernel_check.py and _states/kernel_check.py."""

from __future__ import annotations

import os

import pytest
from salt.exceptions import CommandExecutionError


@pytest.fixture
def kmod(load):
    return load("_modules", "kernel_check")


def state(load, kmod, running: str, *, test: bool = False):
    """The state module wired to the real execution module, with the running kernel pinned."""
    kmod.running = lambda: running
    return load("_states", "kernel_check", salt={"kernel_check.meets": kmod.meets}, test=test)


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("4.4.0-210-generic", (4, 4, 0, 210)),
        ("6.1.0-28-cloud-amd64", (6, 1, 0, 28)),
        ("4.4.27", (4, 4, 27)),
        ("5.10.0-rc3", (5, 10, 0)),
        ("6.18.44-fc-v669", (6, 18, 44)),
        ("3.10.0-1160.el7.x86_64", (3, 10, 0, 1160)),
        ("5.15.0-1034-azure", (5, 15, 0, 1034)),
        ("6.8.0", (6, 8, 0)),
        ("4.19", (4, 19)),
        ("5.4.0-1ubuntu", (5, 4, 0)),
        (" 4.4.27\n", (4, 4, 27)),
    ],
)
def test_parse(kmod, release, expected):
    assert kmod.parse(release) == expected


@pytest.mark.parametrize("garbage", ["abc", "", "4", "v4.4.27", "-4.4", "linux-4.4", "4.x.1"])
def test_parse_garbage_raises_naming_the_string(kmod, garbage):
    with pytest.raises(CommandExecutionError) as exc:
        kmod.parse(garbage)
    assert repr(garbage) in str(exc.value)


@pytest.mark.parametrize("not_a_string", [4.1, 4, None])
def test_parse_refuses_non_strings(kmod, not_a_string):
    # An unquoted 4.10 in YAML arrives as the float 4.1; comparing against it would be wrong.
    with pytest.raises(CommandExecutionError, match="must be a string"):
        kmod.parse(not_a_string)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("4.4.0-210-generic", "4.4.27", -1),
        ("6.1.0-28-cloud-amd64", "4.4.27", 1),
        ("4.4.27", "4.4.27", 0),
        ("4.4.27", "4.4.27-0", 0),
        ("4.4", "4.4.0", 0),
        ("4.4.0-210-generic", "4.4.0-209-generic", 1),
        ("4.4.0-210-generic", "4.4.0", 1),
        ("4.9.0", "4.10.0", -1),
        ("5.10.0-rc3", "5.10.0", 0),
        ("6.18.44-fc-v669", "6.18.44", 0),
        ("6.18.44-fc-v669", "6.18.45", -1),
        ("3.10.0-1160.el7.x86_64", "4.4.27", -1),
    ],
)
def test_compare(kmod, a, b, expected):
    assert kmod.compare(a, b) == expected
    # The ordering must be antisymmetric, or "meets" could pass both ways round.
    assert kmod.compare(b, a) == -expected


def test_compare_garbage_raises(kmod):
    with pytest.raises(CommandExecutionError, match="abc"):
        kmod.compare("4.4.27", "abc")


def test_running_is_the_live_kernel(kmod):
    assert kmod.running() == os.uname().release
    assert kmod.parse(kmod.running())  # this machine's own release must parse


@pytest.mark.parametrize(
    ("running", "minimum", "ok"),
    [
        ("6.1.0-28-cloud-amd64", "4.4.27", True),
        ("4.4.27", "4.4.27", True),
        ("4.4.0-210-generic", "4.4.27", False),
    ],
)
def test_meets(kmod, running, minimum, ok):
    kmod.running = lambda: running
    assert kmod.meets(minimum) == {"running": running, "minimum": minimum, "ok": ok}


def test_virtual(kmod, load):
    assert kmod.__virtual__() == "kernel_check"
    bare_state = load("_states", "kernel_check", salt={})
    loaded, reason = bare_state.__virtual__()
    assert loaded is False and "kernel_check" in reason
    assert state(load, kmod, "6.1.0").__virtual__() == "kernel_check"


@pytest.mark.parametrize("test_mode", [False, True])
def test_state_passes(load, kmod, test_mode):
    ret = state(load, kmod, "6.1.0-28-cloud-amd64", test=test_mode).min_version("4.4.27")
    assert ret == {
        "name": "4.4.27",
        "result": True,
        "changes": {},
        "comment": "running kernel 6.1.0-28-cloud-amd64 meets the minimum 4.4.27",
    }


@pytest.mark.parametrize("test_mode", [False, True])
def test_state_fails_on_old_kernel_even_in_test_mode(load, kmod, test_mode):
    ret = state(load, kmod, "4.4.0-210-generic", test=test_mode).min_version("4.4.27")
    assert ret["result"] is False
    assert ret["changes"] == {}
    for needle in ("4.4.0-210-generic", "4.4.27", "upgrade", "reboot"):
        assert needle in ret["comment"]


@pytest.mark.parametrize("test_mode", [False, True])
def test_state_invalid_minimum(load, kmod, test_mode):
    ret = state(load, kmod, "6.1.0", test=test_mode).min_version("abc")
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "not a kernel release: 'abc'" in ret["comment"]
