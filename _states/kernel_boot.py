"""State: the kernel a node boots, installed from apt and made GRUB's saved default.

It never reboots: it reports that a reboot is required (the changes, the comment, and
``kernel_boot.status``'s ``reboot_required``), and the rolling upgrade reboots nodes one at a
time after draining them (docs/kernel.md).
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "kernel_boot"


def __virtual__():
    for needed in ("kernel_boot.status", "kernel_check.compare"):
        if needed not in __salt__:
            return (False, f"kernel_boot state: the {needed.split('.')[0]} module is not loaded")
    return __virtualname__


def installed(name: str, release: str, min_version: str | None = None) -> dict[str, Any]:
    """
    Boot a kernel of at least ``release``, from the Debian package ``name``.

    name
        The kernel image package: a series metapackage (``linux-image-6.12-cloud-amd64``) or
        one build (``linux-image-6.12.118+deb12-cloud-amd64``).
    release
        The oldest kernel release the node should run (quoted: ``'6.12'``). A node that runs
        it or newer is left alone. Otherwise the newest installed kernel at or above it becomes
        GRUB's saved default, after installing ``name`` when none is installed.
    min_version
        The kernel role's ``kernel:min_version``: a ``release`` below it is refused.

    Refused before anything changes, naming the value: a ``release`` that is not a kernel
    release or is below ``min_version``; a package apt has no installable version of (after
    refreshing its lists, also in test mode: that refreshes a cache, not the node's
    configuration); a package that installs no kernel at or above ``release``.

    SLS Example:

    .. code-block:: yaml

        kernel-boot:
          kernel_boot.installed:
            - name: linux-image-6.12-cloud-amd64
            - release: '6.12'
            - min_version: '4.4.27'

    CLI Example:

    .. code-block:: bash

        salt lvs1 state.single kernel_boot.installed name=linux-image-6.12-cloud-amd64 release=6.12
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    compare = __salt__["kernel_check.compare"]
    try:
        compare(release, release)
        if min_version is not None and compare(release, min_version) < 0:
            ret["comment"] = (
                f"kernel release {release!r} for package {name} is older than "
                f"kernel:min_version {min_version!r}: nothing was changed"
            )
            return ret
        state = __salt__["kernel_boot.status"]()
    except CommandExecutionError as exc:
        ret["comment"] = f"kernel {name} (release {release!r}): {exc}"
        return ret

    running = state["running"]
    if state["container"]:
        ret["result"] = True
        ret["comment"] = (
            f"a container runs its host's kernel ({running}): there is no kernel to boot here"
        )
        return ret
    if compare(running, release) >= 0:
        ret["result"] = True
        ret["comment"] = f"running kernel {running} is at least {release}"
        return ret

    target = __salt__["kernel_boot.newest_at_least"](release, state["installed"])
    if target is not None and state["default"] == target:
        ret["result"] = True
        ret["comment"] = (
            f"kernel {target} is installed and GRUB's default; reboot required (running {running})"
        )
        return ret

    version = None
    if target is None:
        try:
            version = __salt__["kernel_boot.candidate"](name)
            if version is None:
                # The lists may be old (a fresh image has none): ask again after a refresh.
                __salt__["pkg.refresh_db"]()
                version = __salt__["kernel_boot.candidate"](name)
        except CommandExecutionError as exc:
            ret["comment"] = f"cannot ask apt about kernel package {name}: {exc}"
            return ret
        if version is None:
            ret["comment"] = (
                f"kernel package {name!r} has no installable version in this node's apt "
                f"sources (apt-cache policy {name}): nothing was changed"
            )
            return ret
        ret["changes"]["installed"] = {name: {"old": "", "new": version}}
    ret["changes"]["default"] = {
        "old": state["default"],
        "new": target or f"the newest kernel >= {release} that {name} {version} installs",
    }
    ret["changes"]["reboot_required"] = True

    if __opts__["test"]:
        ret["result"] = None
        action = f"install {name} {version} and make" if target is None else f"make {target}"
        ret["comment"] = f"would {action} GRUB's default; a reboot would then be required"
        return ret

    try:
        if target is None:
            result = __salt__["kernel_boot.install"](name)
            target = __salt__["kernel_boot.newest_at_least"](release)
            if target is None:
                ret["changes"] = {"installed": result} if result else {}
                ret["comment"] = (
                    f"installed {name} {version}, but no kernel of at least {release} is in "
                    f"/boot: {name} does not carry the release asked for"
                )
                return ret
            ret["changes"]["default"]["new"] = target
        path = __salt__["kernel_boot.set_default"](target)
    except CommandExecutionError as exc:
        ret["comment"] = f"kernel {name}: {exc}"
        return ret
    ret["result"] = True
    ret["comment"] = (
        f"kernel {target} is GRUB's default ({path}); reboot required (running {running})"
    )
    return ret
