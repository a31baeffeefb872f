"""
Preflight checks for Docker's overlay2 storage driver.

overlay2 needs the filesystem under Docker's data root to fill in ``d_type`` in directory
entries. Without it Docker either refuses to start or (older releases) corrupts layers, and
the failure shows up long after the node was "successfully" configured. These checks run
before Docker is installed so the highstate fails early with a message that says what to fix.

saltyard supports only overlay2 (pillar ``docker:storage_driver``); the data root is pillar
``docker:data_root`` (default ``/var/lib/docker``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any

import salt.utils.path
from salt.exceptions import CommandExecutionError

__virtualname__ = "docker_storage"

SUPPORTED_DRIVER = "overlay2"

# <dirent.h>: the file type is unknown, i.e. the filesystem does not report d_type.
DT_UNKNOWN = 0


def __virtual__() -> str | tuple[bool, str]:
    # overlay2, findmnt and the glibc dirent layout below are all Linux-only.
    if not sys.platform.startswith("linux"):
        return (False, "docker_storage: only Linux is supported")
    if not salt.utils.path.which("findmnt"):
        return (False, "docker_storage: findmnt (util-linux) is not installed")
    return __virtualname__


class _Dirent64(ctypes.Structure):
    # struct dirent64 as glibc lays it out on x86-64 (and other LP64 Linux targets).
    _fields_ = [
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_ubyte),
        ("d_name", ctypes.c_char * 256),
    ]


def _existing_ancestor(path: str) -> str:
    # The data root may not exist before Docker is installed; it will be created on whatever
    # filesystem holds its nearest existing ancestor, so that is the one to inspect.
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _run(argv: list[str]) -> str:
    # python_shell=False: the path comes from pillar and must never be shell-interpreted.
    res = __salt__["cmd.run_all"](argv, python_shell=False)
    if res.get("retcode") != 0:
        detail = (res.get("stderr") or res.get("stdout") or "").strip()
        raise CommandExecutionError(
            f"{' '.join(argv)} failed (exit {res.get('retcode')}): {detail or 'no output'}"
        )
    return res.get("stdout", "")


def _as_int(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def parse_xfs_info(text: str) -> dict[str, Any]:
    """
    Parse ``xfs_info`` (or ``mkfs.xfs``) geometry output.

    Returns at least ``ftype`` (int), ``crc`` (int, or None when xfsprogs is too old to print
    it), ``isize`` (inode size) and ``bsize`` (data block size), plus ``device`` (the
    ``meta-data=`` value). Raises CommandExecutionError if there is no ``ftype``.

    CLI Example:

    .. code-block:: bash

        salt '*' docker_storage.parse_xfs_info "$(xfs_info /var/lib/docker)"
    """
    # The output is sections ("meta-data", "data", "naming", "log", "realtime"); lines that
    # start with "=" continue the previous section. Keys repeat across sections (bsize is in
    # data, naming and log), so keep them per section.
    sections: dict[str, dict[str, int | str]] = {}
    section = ""
    for line in text.splitlines():
        head = re.match(r"^([A-Za-z-]*)\s*=\s*(\S*)(.*)$", line)
        if head is None:
            continue  # e.g. the "V4 filesystems are deprecated" warning mkfs.xfs prints
        name, first, rest = head.groups()
        if "=" in first:
            # "data     =        bsize=4096": the section has no value, only key=value pairs.
            first, rest = "", first + rest
        if name:
            section = name
            sections.setdefault(section, {})["_value"] = first
        if not section:
            continue
        for key, value in re.findall(r"([A-Za-z][\w-]*)=([^\s,]*)", rest):
            sections[section][key] = _as_int(value)

    ftype = sections.get("naming", {}).get("ftype")
    if not isinstance(ftype, int):
        raise CommandExecutionError(f"no ftype in xfs_info output: {text!r}")
    meta = sections.get("meta-data", {})
    data = sections.get("data", {})
    crc = meta.get("crc")
    return {
        "ftype": ftype,
        "crc": crc if isinstance(crc, int) else None,
        "isize": meta.get("isize"),
        "bsize": data.get("bsize"),
        "device": meta.get("_value") or None,
    }


def mount_of(path: str) -> dict[str, str]:
    """
    Return ``{'target', 'source', 'fstype'}`` of the mount holding ``path``.

    If ``path`` does not exist yet, the mount of its nearest existing ancestor is returned,
    since that is where it will be created.

    CLI Example:

    .. code-block:: bash

        salt '*' docker_storage.mount_of /var/lib/docker
    """
    probe = _existing_ancestor(path)
    out = _run(["findmnt", "-n", "-J", "-T", probe, "-o", "TARGET,SOURCE,FSTYPE"])
    try:
        fs = json.loads(out)["filesystems"][0]
        return {"target": fs["target"], "source": fs["source"], "fstype": fs["fstype"]}
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CommandExecutionError(f"unexpected findmnt output for {probe}: {out!r}") from exc


@functools.cache
def _dir_funcs() -> tuple[Any, Any, Any]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    opendir, closedir = libc.opendir, libc.closedir
    # readdir64 is the explicit large-file name; on 64-bit glibc readdir is the same function.
    readdir = getattr(libc, "readdir64", None) or libc.readdir
    opendir.argtypes, opendir.restype = [ctypes.c_char_p], ctypes.c_void_p
    readdir.argtypes, readdir.restype = [ctypes.c_void_p], ctypes.POINTER(_Dirent64)
    closedir.argtypes, closedir.restype = [ctypes.c_void_p], ctypes.c_int
    return opendir, readdir, closedir


def _dtypes(directory: str) -> dict[str, int]:
    # Python's os.scandir does not expose d_type (DirEntry.is_dir() silently falls back to
    # stat), so read the raw entries through libc.
    opendir, readdir, closedir = _dir_funcs()
    handle = opendir(os.fsencode(directory))
    if not handle:
        err = ctypes.get_errno()
        raise CommandExecutionError(f"opendir({directory}) failed: {os.strerror(err)}")
    try:
        entries: dict[str, int] = {}
        while True:
            ctypes.set_errno(0)
            ent = readdir(handle)
            if not ent:
                # NULL with errno 0 is end-of-directory; anything else is a read error.
                err = ctypes.get_errno()
                if err:
                    raise CommandExecutionError(f"readdir({directory}) failed: {os.strerror(err)}")
                return entries
            entries[os.fsdecode(ent.contents.d_name)] = ent.contents.d_type
    finally:
        closedir(handle)


def supports_d_type(path: str) -> bool:
    """
    Probe whether the filesystem holding ``path`` reports ``d_type`` (what Docker checks).

    Creates a temporary directory with one file under ``path`` (or its nearest existing
    ancestor), reads the directory with libc ``readdir`` and returns whether the file's
    ``d_type`` is known. The temporary directory is always removed.

    CLI Example:

    .. code-block:: bash

        salt '*' docker_storage.supports_d_type /var/lib/docker
    """
    probe_dir = tempfile.mkdtemp(prefix=".saltyard-d_type-", dir=_existing_ancestor(path))
    try:
        with open(os.path.join(probe_dir, "probe"), "w", encoding="ascii"):
            pass
        entries = _dtypes(probe_dir)
        if "probe" not in entries:
            raise CommandExecutionError(f"d_type probe: readdir({probe_dir}) did not list the file")
        return entries["probe"] != DT_UNKNOWN
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


def preflight(path: str = "/var/lib/docker", driver: str = SUPPORTED_DRIVER) -> dict[str, Any]:
    """
    Check that Docker can use ``driver`` with its data root at ``path``.

    Returns ``{'ok', 'path', 'mount', 'fstype', 'driver', 'message'}``. Problems, including a
    probe that cannot run, give ``ok: False`` with the reason and the fix in ``message``: an
    unverified filesystem is treated as unsupported.

    CLI Example:

    .. code-block:: bash

        salt '*' docker_storage.preflight /var/lib/docker overlay2
    """
    ret: dict[str, Any] = {
        "ok": False,
        "path": path,
        "mount": None,
        "fstype": None,
        "driver": driver,
        "message": "",
    }
    # Checked first and without probing: a wrong pillar value is the cheapest thing to fix.
    if driver != SUPPORTED_DRIVER:
        ret["message"] = (
            f"storage driver {driver!r} is not supported: saltyard supports only "
            f"{SUPPORTED_DRIVER}; set pillar docker:storage_driver to {SUPPORTED_DRIVER}"
        )
        return ret

    try:
        mount = mount_of(path)
        ret["mount"], ret["fstype"] = mount["target"], mount["fstype"]
        if mount["fstype"] == "xfs":
            # XFS is the one common filesystem where d_type is a format-time option (ftype),
            # so ask the filesystem itself rather than relying on one readdir.
            info = parse_xfs_info(_run(["xfs_info", mount["target"]]))
            if info["ftype"] == 0:
                device = info["device"] or mount["source"]
                ret["message"] = (
                    f"{path} is on the xfs filesystem mounted at {mount['target']} "
                    f"(device {device}), which was formatted with ftype=0: overlay2 needs "
                    f"d_type support. Fix: reformat {device} with `mkfs.xfs -n ftype=1` "
                    "(this erases it), or point Docker's data root at another filesystem "
                    "with pillar docker:data_root"
                )
                return ret
        elif not supports_d_type(path):
            ret["message"] = (
                f"{path} is on {mount['target']} ({mount['fstype']}, device {mount['source']}), "
                "which does not report d_type in directory entries: overlay2 cannot run "
                "there. Fix: point Docker's data root at a filesystem with d_type support "
                "(ext4, or xfs formatted with ftype=1) with pillar docker:data_root"
            )
            return ret
    except (CommandExecutionError, OSError) as exc:
        ret["message"] = f"cannot verify {SUPPORTED_DRIVER} support for {path}: {exc}"
        return ret

    ret["ok"] = True
    ret["message"] = f"{SUPPORTED_DRIVER} is supported on {mount['target']} ({mount['fstype']})"
    return ret
