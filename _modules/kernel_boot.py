"""
Which kernels a node has, which one GRUB boots next, and installing and choosing one.

The kernel role (states/kernel, docs/kernel.md) installs the kernel a site's pillar asks for
and makes it GRUB's saved default; it never reboots. Whether a node needs a reboot is computed
here from the running kernel and GRUB's saved default each time it is asked (``status``), so it
cannot go stale: the rolling upgrade reads it.

GRUB's view is read from its own files: ``/boot/grub/grub.cfg`` (the menu Debian's update-grub
writes, with an id per entry) and ``/boot/grub/grubenv`` (``saved_entry``, which
``grub-set-default`` writes and ``GRUB_DEFAULT=saved`` obeys). With no saved entry GRUB boots
the menu's first entry, which update-grub makes the newest kernel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "kernel_boot"

BOOT = Path("/boot")
GRUB_CFG = BOOT / "grub" / "grub.cfg"
GRUBENV = BOOT / "grub" / "grubenv"
DEFAULT_GRUB = Path("/etc/default/grub")

_ID_RE = re.compile(r"\$menuentry_id_option\s+'([^']+)'")
_TITLE_RE = re.compile(r"""^\s*(?:menuentry|submenu)\s+(?:'([^']*)'|"([^"]*)")""")
_LINUX_RE = re.compile(r"^\s*linux(?:16)?\s+\S*/vmlinuz-(\S+)")


def __virtual__() -> str | tuple[bool, str]:
    if not hasattr(os, "uname"):
        return (False, "kernel_boot: os.uname() is not available on this platform")
    return __virtualname__


# --- reading GRUB's files (pure functions: the unit tests feed them real update-grub output) ---


def parse_grub_cfg(text: str) -> list[dict[str, Any]]:
    """
    The boot entries of a grub.cfg, in menu order: ``{'path': [id or title, ...], 'title',
    'release', 'top': index of the top-level menu item it is or is inside, 'recovery': bool}``.
    ``path`` is what grub-set-default takes (a submenu's id, ``>``, the entry's id). Blocks that
    are not menu items (``function ... {``) are skipped.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.parse_grub_cfg "$(cat /boot/grub/grub.cfg)"
    """
    entries: list[dict[str, Any]] = []
    stack: list[dict[str, Any]] = []  # the open blocks
    top = 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped == "}":
            if stack:
                closed = stack.pop()
                menus_open = any(b["kind"] != "other" for b in stack)
                if closed["kind"] != "other" and not menus_open:
                    top += 1
            continue
        if stripped.endswith("{"):
            word = stripped.split(None, 1)[0]
            kind = word if word in ("menuentry", "submenu") else "other"
            block: dict[str, Any] = {"kind": kind}
            if kind != "other":
                title_match = _TITLE_RE.match(stripped)
                title = (title_match.group(1) or title_match.group(2) or "") if title_match else ""
                id_match = _ID_RE.search(stripped)
                block["key"] = id_match.group(1) if id_match else title
                if kind == "menuentry":
                    submenus = [b["key"] for b in stack if b["kind"] == "submenu"]
                    block["entry"] = {
                        "path": [*submenus, block["key"]],
                        "title": title,
                        "release": None,
                        "top": top,
                        "recovery": "recovery mode" in title,
                    }
                    entries.append(block["entry"])
            stack.append(block)
            continue
        linux = _LINUX_RE.match(line)
        if linux:
            for block in reversed(stack):
                if "entry" in block:
                    block["entry"]["release"] = linux.group(1)
                    break
    return entries


def parse_grubenv(text: str) -> dict[str, str]:
    """
    The variables of a grubenv block (``key=value`` lines; the ``#`` padding ignored).

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.parse_grubenv "$(cat /boot/grub/grubenv)"
    """
    env = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key] = value
    return env


def resolve(entries: list[dict[str, Any]], saved_entry: str | None) -> dict[str, Any] | None:
    """
    The entry GRUB boots for ``saved_entry`` (GRUB_DEFAULT=saved): empty means the first
    top-level item, a number a top-level index, otherwise a ``>``-joined path of ids or
    titles. None when nothing matches (GRUB then falls back to the first item, which this does
    not guess).

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.resolve entries='[...]' saved_entry='gnulinux-adv-X>gnulinux-6.12-X'
    """
    if not saved_entry:
        saved_entry = "0"
    if saved_entry.isdigit():
        # A top-level index; one that names a submenu boots the submenu's first entry.
        index = int(saved_entry)
        return next((e for e in entries if e["top"] == index), None)
    wanted = saved_entry.split(">")
    for entry in entries:
        if entry["path"] == wanted or (
            len(entry["path"]) == len(wanted) and entry["title"] == wanted[-1]
        ):
            return entry
    return None


# --- the node's state --------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {path}: {exc}") from exc


def installed() -> list[str]:
    """
    The kernel releases installed in /boot (``vmlinuz-<release>``), oldest first.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.installed
    """
    releases = [p.name.removeprefix("vmlinuz-") for p in BOOT.glob("vmlinuz-*")]
    return sorted(releases, key=_sort_key)


def _sort_key(release: str) -> tuple:
    # As `sort -V` (update-grub's order): numbers as numbers, so 6.1.0-9 < 6.1.0-10.
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", release))


def in_container() -> bool:
    """
    True in a container (it runs its host's kernel and has no bootloader of its own).

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.in_container
    """
    # What systemd-detect-virt --container reads: PID 1's environment names the container
    # manager, and systemd records what it detected.
    if Path("/run/systemd/container").exists() or Path("/.dockerenv").exists():
        return True
    try:
        environ = Path("/proc/1/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(var.startswith(b"container=") for var in environ)


def default() -> str | None:
    """
    The kernel release GRUB boots next (its saved default), or None when GRUB's files do not
    say (no grub.cfg, or a saved entry that names no entry).

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.default
    """
    entries = parse_grub_cfg(_read(GRUB_CFG))
    if not entries:
        return None
    entry = resolve(entries, parse_grubenv(_read(GRUBENV)).get("saved_entry"))
    return entry["release"] if entry else None


def status() -> dict[str, Any]:
    """
    The running kernel, the installed ones, GRUB's saved default, and whether a reboot is
    required to run that default (``reboot_required``): computed now, from the running kernel
    and GRUB's files.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.status
    """
    running = os.uname().release
    boots = default()
    container = in_container()
    return {
        "running": running,
        "installed": installed(),
        "default": boots,
        "container": container,
        "reboot_required": bool(not container and boots and boots != running),
    }


def candidate(package: str) -> str | None:
    """
    The version apt would install for ``package`` from the node's sources, as of its package
    lists; None when apt knows no installable version.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.candidate linux-image-6.12-cloud-amd64
    """
    out = __salt__["cmd.run_all"](
        ["apt-cache", "policy", package], python_shell=False, env={"LC_ALL": "C"}
    )
    if out["retcode"] != 0:
        raise CommandExecutionError(f"apt-cache policy {package} failed: {out['stderr']}")
    match = re.search(r"^\s*Candidate:\s*(\S+)", out["stdout"], re.MULTILINE)
    if not match or match.group(1) == "(none)":
        return None
    return match.group(1)


def newest_at_least(release: str, releases: list[str] | None = None) -> str | None:
    """
    The newest installed kernel release that is at least ``release`` (compared as
    kernel_check.compare does), or None.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.newest_at_least 6.12
    """
    releases = installed() if releases is None else releases
    good = [r for r in releases if __salt__["kernel_check.compare"](r, release) >= 0]
    return sorted(good, key=_sort_key)[-1] if good else None


def install(package: str) -> dict[str, Any]:
    """
    Install ``package`` without its recommends (a kernel's recommends bring apparmor and
    firmware a VM or a container host does not want); when that fails on apt's lists being
    older than the archive (a replaced build is gone from the mirror), refresh them and try
    again. (Not a refresh first every time: under emulation an apt-get update costs a minute,
    and the kernel state has just asked apt for the candidate.) Debian's kernel hooks build the
    initramfs and run update-grub. Returns what pkg.install reports.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.install linux-image-6.12-cloud-amd64
    """
    try:
        return __salt__["pkg.install"](name=package, refresh=False, install_recommends=False)
    except CommandExecutionError:
        return __salt__["pkg.install"](name=package, refresh=True, install_recommends=False)


def entry_path(release: str, entries: list[dict[str, Any]] | None = None) -> str | None:
    """
    The grub-set-default argument that boots exactly ``release``: the entry in Debian's
    "Advanced options" submenu (the top-level entry boots whatever kernel is newest when
    update-grub last ran), not a recovery-mode one. None when grub.cfg has no such entry.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.entry_path 6.12.118+deb12-cloud-amd64
    """
    entries = parse_grub_cfg(_read(GRUB_CFG)) if entries is None else entries
    matching = [e for e in entries if e["release"] == release and not e["recovery"]]
    matching.sort(key=lambda e: len(e["path"]) == 1)  # submenu entries first
    return ">".join(matching[0]["path"]) if matching else None


def set_default(release: str) -> str:
    """
    Make ``release`` GRUB's saved default: update-grub when grub.cfg has no entry for it yet,
    then grub-set-default with the entry's id, then read back. Returns the entry path.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_boot.set_default 6.12.118+deb12-cloud-amd64
    """
    if not (BOOT / f"vmlinuz-{release}").exists():
        raise CommandExecutionError(
            f"kernel {release!r} is not installed (no /boot/vmlinuz-{release})"
        )
    _ensure_saved_default()
    path = entry_path(release)
    if path is None:
        _run(["update-grub"])
        path = entry_path(release)
    if path is None:
        raise CommandExecutionError(
            f"update-grub wrote no menu entry for kernel {release} into {GRUB_CFG}"
        )
    _run(["grub-set-default", path])
    now = default()
    if now != release:
        raise CommandExecutionError(
            f"grub-set-default {path!r} ran, but GRUB's default reads back as {now!r}, "
            f"not {release!r}"
        )
    return path


def _ensure_saved_default() -> None:
    """GRUB_DEFAULT=saved in /etc/default/grub (then update-grub writes grub.cfg to obey
    grubenv). A node whose file says otherwise is refused rather than rewritten: another tool
    manages its bootloader."""
    text = _read(DEFAULT_GRUB)
    match = re.search(r"^GRUB_DEFAULT=(.*)$", text, re.MULTILINE)
    value = match.group(1).strip().strip("\"'") if match else "0"
    if value != "saved":
        raise CommandExecutionError(
            f"{DEFAULT_GRUB} has GRUB_DEFAULT={value}: GRUB would ignore grub-set-default. "
            "Set GRUB_DEFAULT=saved there (and run update-grub) to let the kernel role choose "
            "the boot kernel"
        )


def _run(cmd: list[str]) -> str:
    out = __salt__["cmd.run_all"](cmd, python_shell=False)
    if out["retcode"] != 0:
        raise CommandExecutionError(
            f"{' '.join(cmd)} failed ({out['retcode']}): {(out['stderr'] or out['stdout']).strip()}"
        )
    return out["stdout"]
