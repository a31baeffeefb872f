"""_states/kernel_boot.py's decisions, with the real kernel_check.compare and
kernel_boot.newest_at_least, and the node's facts (kernel_boot.status, apt's candidate) given as
data. The install, GRUB's default and the reboot run for real on agent-vm in the cluster
(tests/convergence/test_kernel_rollout_agent.py: the rollout applies the kernel role); these
cases are the ones that run does not reach: a kernel installed and made the default but not yet
booted, and what each refusal leaves untouched."""

from __future__ import annotations

from typing import Any

import pytest

OLD = "6.1.0-50-cloud-amd64"
NEW = "6.12.118+deb12-cloud-amd64"
PACKAGE = "linux-image-6.12-cloud-amd64"


class Node:
    """The facts one node gives the state, and the calls that would change it."""

    def __init__(self, load, running=OLD, installed=(OLD,), default=OLD, candidate=None):
        self.facts = {
            "running": running,
            "installed": list(installed),
            "default": default,
            "container": False,
            "reboot_required": default != running,
        }
        self.candidates = [candidate]
        self.calls: list[tuple[str, Any]] = []
        check = load("_modules", "kernel_check")
        boot = load("_modules", "kernel_boot", salt={"kernel_check.compare": check.compare})
        self.salt = {
            "kernel_check.compare": check.compare,
            "kernel_boot.newest_at_least": boot.newest_at_least,
            "kernel_boot.status": lambda: dict(self.facts),
            "kernel_boot.candidate": self._candidate,
            "pkg.refresh_db": lambda: self.calls.append(("refresh_db", None)),
            "kernel_boot.install": lambda name: self.calls.append(("install", name)),
            "kernel_boot.set_default": lambda release: self.calls.append(("default", release)),
        }
        self.load = load

    def _candidate(self, name: str) -> str | None:
        return self.candidates[0] if self.candidates else None

    def state(self, test: bool = False):
        return self.load("_states", "kernel_boot", salt=self.salt, test=test)


def test_a_kernel_installed_and_made_default_but_not_booted_changes_nothing(load):
    node = Node(load, installed=(OLD, NEW), default=NEW)
    for test in (True, False):
        ret = node.state(test).installed(PACKAGE, "6.12", min_version="4.4.27")
        assert ret["result"] is True and ret["changes"] == {}, ret
        assert ret["comment"] == (
            f"kernel {NEW} is installed and GRUB's default; reboot required (running {OLD})"
        )
    assert node.calls == []


def test_a_node_running_the_release_or_newer_is_left_alone(load):
    node = Node(load, running=NEW, installed=(OLD, NEW), default=NEW)
    ret = node.state().installed(PACKAGE, "6.12")
    assert ret["result"] is True and ret["changes"] == {}
    assert ret["comment"] == f"running kernel {NEW} is at least 6.12"
    assert node.calls == []


def test_test_mode_predicts_the_install_and_the_reboot_and_changes_nothing(load):
    node = Node(load, candidate="6.12.118-1~deb12u1")
    ret = node.state(test=True).installed(PACKAGE, "6.12")
    assert ret["result"] is None
    assert ret["changes"]["installed"] == {PACKAGE: {"old": "", "new": "6.12.118-1~deb12u1"}}
    assert ret["changes"]["default"]["old"] == OLD
    assert ret["changes"]["reboot_required"] is True
    assert ret["comment"] == (
        f"would install {PACKAGE} 6.12.118-1~deb12u1 and make GRUB's default; a reboot would "
        "then be required"
    )
    assert node.calls == []


def test_an_installed_kernel_that_is_not_the_default_is_only_made_the_default(load):
    node = Node(load, installed=(OLD, NEW), default=OLD)
    predicted = node.state(test=True).installed(PACKAGE, "6.12")
    assert predicted["result"] is None and "installed" not in predicted["changes"]
    assert predicted["changes"]["default"] == {"old": OLD, "new": NEW}
    assert predicted["comment"] == (
        f"would make {NEW} GRUB's default; a reboot would then be required"
    )
    assert node.calls == []
    node.salt["kernel_boot.set_default"] = lambda release: (
        node.calls.append(("default", release)) or "1>gnulinux-x"
    )
    done = node.state().installed(PACKAGE, "6.12")
    assert done["result"] is True and node.calls == [("default", NEW)]


def test_a_package_apt_has_no_version_of_is_refused_after_one_refresh(load):
    node = Node(load, candidate=None)
    for test in (True, False):
        node.calls.clear()
        ret = node.state(test).installed("linux-image-9.99-cloud-amd64", "9.99")
        assert ret["result"] is False and ret["changes"] == {}
        assert ret["comment"] == (
            "kernel package 'linux-image-9.99-cloud-amd64' has no installable version in this "
            "node's apt sources (apt-cache policy linux-image-9.99-cloud-amd64): nothing was "
            "changed"
        )
        # The lists are refreshed once (a cache, also in test mode); nothing is installed.
        assert node.calls == [("refresh_db", None)]


@pytest.mark.parametrize(
    ("release", "message"),
    [
        ("4.3", "kernel release '4.3' for package linux-image-4.3 is older than "
                "kernel:min_version '4.4.27': nothing was changed"),
        ("six", "kernel linux-image-six (release 'six'): not a kernel release: 'six'"),
    ],
)  # fmt: skip
def test_a_bad_or_too_old_release_is_refused_naming_it(load, release, message):
    node = Node(load, candidate="1")
    ret = node.state().installed(f"linux-image-{release}", release, min_version="4.4.27")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == message
    assert node.calls == []


def test_the_install_leaves_out_recommends(load):
    calls = []
    boot = load(
        "_modules",
        "kernel_boot",
        salt={"pkg.install": lambda **kwargs: calls.append(kwargs) or {PACKAGE: {}}},
    )
    boot.install(PACKAGE)
    assert calls == [{"name": PACKAGE, "refresh": False, "install_recommends": False}]
