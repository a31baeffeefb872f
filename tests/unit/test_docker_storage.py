"""
Tests for _modules/docker_storage.py and _states/docker_storage.py.

xfs_info/findmnt outputs in tests/unit/data were captured on a real machine (xfsprogs 6.1.0):
``xfs_info_ftype1.txt`` and ``xfs_info_ftype0.txt`` are what ``mkfs.xfs`` printed for a default
and a ``-m crc=0 -n ftype=0`` image, ``xfs_info_mounted_ftype1.txt`` is ``xfs_info`` on the
loop-mounted ftype=1 image and ``findmnt_xfs.json`` is ``findmnt -n -J -T`` on that mount.
The only fake is ``cmd.run_all`` replaying those outputs; everything else runs for real.
"""

from __future__ import annotations

import ctypes
import os
import subprocess

import pytest
import salt.utils.path
from salt.exceptions import CommandExecutionError

from tests.support.components import require, require_program, require_root

XFS_TARGET = "/tmp/xfs1mnt"  # the mount point recorded in findmnt_xfs.json


class Replay:
    """A ``cmd.run_all`` that answers from captured outputs, keyed by program name."""

    def __init__(self, **outputs: str | tuple[int, str]) -> None:
        self.outputs = outputs
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], python_shell: bool = False, **_: object) -> dict:
        assert python_shell is False and isinstance(cmd, list), cmd
        self.calls.append(cmd)
        out = self.outputs[cmd[0]]
        retcode, text = out if isinstance(out, tuple) else (0, out)
        return {
            "pid": 0,
            "retcode": retcode,
            "stdout": text if retcode == 0 else "",
            "stderr": "" if retcode == 0 else text,
        }


@pytest.fixture
def dmod(load, real_run_all):
    return load("_modules", "docker_storage", salt={"cmd.run_all": real_run_all})


# --- parse_xfs_info ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "xfs_info_ftype1.txt",
            {"ftype": 1, "crc": 1, "isize": 512, "bsize": 4096, "device": "/tmp/x1.img"},
        ),
        (
            "xfs_info_ftype0.txt",
            {"ftype": 0, "crc": 0, "isize": 256, "bsize": 4096, "device": "/tmp/x0.img"},
        ),
        (
            "xfs_info_mounted_ftype1.txt",
            {"ftype": 1, "crc": 1, "isize": 512, "bsize": 4096, "device": "/dev/loop0"},
        ),
    ],
)
def test_parse_xfs_info(dmod, data, fixture, expected):
    assert dmod.parse_xfs_info(data(fixture)) == expected


def test_parse_xfs_info_skips_the_v4_warning(dmod, data):
    # mkfs.xfs prints this on stdout for crc=0; it must not confuse the parser.
    assert data("xfs_info_ftype0.txt").startswith("V4 filesystems are deprecated")


def test_parse_xfs_info_old_format_without_crc(dmod, data):
    # xfsprogs before 3.2 printed neither crc nor commas between naming fields.
    text = "\n".join(
        line.replace(", ftype", " ftype")
        for line in data("xfs_info_ftype0.txt").splitlines()
        if "crc=" not in line
    )
    info = dmod.parse_xfs_info(text)
    assert info["ftype"] == 0 and info["crc"] is None


@pytest.mark.parametrize("text", ["", "xfs_info: /srv is not a mounted XFS filesystem", "naming"])
def test_parse_xfs_info_without_ftype_raises(dmod, text):
    with pytest.raises(CommandExecutionError, match="no ftype"):
        dmod.parse_xfs_info(text)


def test_parse_xfs_info_without_naming_line_raises(dmod, data):
    text = "\n".join(
        line for line in data("xfs_info_ftype1.txt").splitlines() if "naming" not in line
    )
    with pytest.raises(CommandExecutionError, match="no ftype"):
        dmod.parse_xfs_info(text)


# --- mount_of ----------------------------------------------------------------------------------


def test_mount_of_uses_nearest_existing_ancestor(dmod, data, tmp_path):
    dmod.__salt__["cmd.run_all"] = replay = Replay(findmnt=data("findmnt_xfs.json"))
    missing = tmp_path / "var" / "lib" / "docker"
    assert dmod.mount_of(str(missing)) == {
        "target": XFS_TARGET,
        "source": "/dev/loop0",
        "fstype": "xfs",
    }
    assert replay.calls == [
        ["findmnt", "-n", "-J", "-T", str(tmp_path), "-o", "TARGET,SOURCE,FSTYPE"]
    ]
    assert not (tmp_path / "var").exists()


def test_mount_of_real(dmod, tmp_path):
    mount = dmod.mount_of(str(tmp_path / "not" / "yet"))
    assert set(mount) == {"target", "source", "fstype"}
    assert str(tmp_path).startswith(mount["target"])
    assert mount["fstype"]


@pytest.mark.parametrize("output", [(1, "findmnt: boom"), "", "{}", '{"filesystems": []}'])
def test_mount_of_errors_raise(dmod, tmp_path, output):
    dmod.__salt__["cmd.run_all"] = Replay(findmnt=output)
    with pytest.raises(CommandExecutionError):
        dmod.mount_of(str(tmp_path))


# --- d_type probe ------------------------------------------------------------------------------


def test_dirent64_layout(dmod):
    # glibc x86-64 struct dirent64; a wrong offset would read d_type from the wrong byte.
    assert ctypes.sizeof(dmod._Dirent64) == 280
    assert dmod._Dirent64.d_reclen.offset == 16
    assert dmod._Dirent64.d_type.offset == 18
    assert dmod._Dirent64.d_name.offset == 19


def test_raw_readdir_reports_real_types(dmod, tmp_path):
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    os.symlink("a-file", tmp_path / "a-link")
    entries = dmod._dtypes(str(tmp_path))
    # DT_DIR=4, DT_REG=8, DT_LNK=10 on filesystems with d_type (ext4, tmpfs, overlay here).
    assert entries == {".": 4, "..": 4, "a-dir": 4, "a-file": 8, "a-link": 10}


def test_raw_readdir_missing_dir_raises(dmod, tmp_path):
    with pytest.raises(CommandExecutionError, match="opendir"):
        dmod._dtypes(str(tmp_path / "missing"))


def test_supports_d_type_real_and_cleans_up(dmod, tmp_path):
    assert dmod.supports_d_type(str(tmp_path)) is True
    assert list(tmp_path.iterdir()) == []


def test_supports_d_type_probes_existing_ancestor(dmod, tmp_path):
    assert dmod.supports_d_type(str(tmp_path / "var" / "lib" / "docker")) is True
    assert list(tmp_path.iterdir()) == []


def test_supports_d_type_false_when_dt_unknown(dmod, tmp_path, monkeypatch):
    monkeypatch.setattr(dmod, "_dtypes", lambda d: {".": 0, "..": 0, "probe": dmod.DT_UNKNOWN})
    assert dmod.supports_d_type(str(tmp_path)) is False
    assert list(tmp_path.iterdir()) == []


def test_supports_d_type_cleans_up_on_error(dmod, tmp_path, monkeypatch):
    def fail(directory):
        assert os.listdir(directory) == ["probe"]  # the probe file really was created
        raise CommandExecutionError("readdir failed")

    monkeypatch.setattr(dmod, "_dtypes", fail)
    with pytest.raises(CommandExecutionError):
        dmod.supports_d_type(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


# --- preflight ---------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["aufs", "devicemapper", "overlay", ""])
def test_preflight_rejects_other_drivers_without_probing(dmod, tmp_path, driver):
    dmod.__salt__["cmd.run_all"] = replay = Replay()
    ret = dmod.preflight(str(tmp_path), driver)
    assert ret["ok"] is False
    assert ret["driver"] == driver
    assert repr(driver) in ret["message"]
    assert "only overlay2" in ret["message"]
    assert "docker:storage_driver" in ret["message"]
    assert replay.calls == []


def test_preflight_real_filesystem(dmod, tmp_path):
    # Real findmnt, real xfs_info if tmp happens to be xfs, real d_type probe otherwise.
    path = str(tmp_path / "var" / "lib" / "docker")
    mount = dmod.mount_of(path)
    assert dmod.preflight(path) == {
        "ok": True,
        "path": path,
        "mount": mount["target"],
        "fstype": mount["fstype"],
        "driver": "overlay2",
        "message": f"overlay2 is supported on {mount['target']} ({mount['fstype']})",
    }
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("xfs_info", ["xfs_info_ftype1.txt", "xfs_info_mounted_ftype1.txt"])
def test_preflight_xfs_ftype1(dmod, data, tmp_path, xfs_info):
    dmod.__salt__["cmd.run_all"] = replay = Replay(
        findmnt=data("findmnt_xfs.json"), xfs_info=data(xfs_info)
    )
    ret = dmod.preflight(str(tmp_path))
    assert ret["ok"] is True
    assert (ret["mount"], ret["fstype"]) == (XFS_TARGET, "xfs")
    assert ret["message"] == f"overlay2 is supported on {XFS_TARGET} (xfs)"
    assert replay.calls[-1] == ["xfs_info", XFS_TARGET]


def test_preflight_xfs_ftype0(dmod, data, tmp_path):
    dmod.__salt__["cmd.run_all"] = Replay(
        findmnt=data("findmnt_xfs.json"), xfs_info=data("xfs_info_ftype0.txt")
    )
    path = str(tmp_path / "docker")
    ret = dmod.preflight(path)
    assert ret["ok"] is False
    assert (ret["mount"], ret["fstype"]) == (XFS_TARGET, "xfs")
    for needle in (path, XFS_TARGET, "/tmp/x0.img", "mkfs.xfs -n ftype=1", "docker:data_root"):
        assert needle in ret["message"]


def test_preflight_xfs_info_failure_fails_closed(dmod, data, tmp_path):
    dmod.__salt__["cmd.run_all"] = Replay(
        findmnt=data("findmnt_xfs.json"),
        xfs_info=(1, f"xfs_info: {XFS_TARGET} is not a mounted XFS filesystem"),
    )
    ret = dmod.preflight(str(tmp_path))
    assert ret["ok"] is False
    assert "cannot verify overlay2 support" in ret["message"]
    assert "is not a mounted XFS filesystem" in ret["message"]


def test_preflight_findmnt_failure_fails_closed(dmod, tmp_path):
    dmod.__salt__["cmd.run_all"] = Replay(findmnt=(1, "findmnt: cannot open /proc/self/mountinfo"))
    ret = dmod.preflight(str(tmp_path))
    assert ret["ok"] is False
    assert "/proc/self/mountinfo" in ret["message"]


def test_preflight_no_d_type(dmod, data, tmp_path, monkeypatch):
    dmod.__salt__["cmd.run_all"] = Replay(findmnt=data("findmnt_ext4_bind.json"))
    monkeypatch.setattr(dmod, "supports_d_type", lambda path: False)
    path = str(tmp_path / "docker")
    ret = dmod.preflight(path)
    assert ret["ok"] is False
    assert (ret["mount"], ret["fstype"]) == ("/var/lib/docker", "ext4")
    for needle in (path, "/var/lib/docker", "ext4", "d_type", "docker:data_root"):
        assert needle in ret["message"]


def test_preflight_probe_oserror_fails_closed(dmod, data, tmp_path, monkeypatch):
    def readonly(path):
        raise OSError(30, "Read-only file system")

    dmod.__salt__["cmd.run_all"] = Replay(findmnt=data("findmnt_ext4_bind.json"))
    monkeypatch.setattr(dmod, "supports_d_type", readonly)
    ret = dmod.preflight(str(tmp_path))
    assert ret["ok"] is False
    assert "Read-only file system" in ret["message"]


# --- a real xfs filesystem ---------------------------------------------------------------------


@pytest.fixture
def xfs_mount(tmp_path):
    """Loop-mount a fresh ftype=1 xfs image; needs root with working loop mounts (without
    them: skipped, and a failure under CI=true, so the real-XFS tests never quietly vanish)."""
    require_root("loop-mounting an xfs image")
    require_program("mkfs.xfs", "xfsprogs")
    require_program("xfs_info", "xfsprogs")
    image, mnt = tmp_path / "xfs.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(300 * 1024 * 1024)  # sparse; 300M is mkfs.xfs's minimum size
    mnt.mkdir()
    subprocess.run(["mkfs.xfs", "-f", "-q", str(image)], check=True)
    proc = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        require("loop mount", f"cannot loop-mount an xfs image here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        image.unlink()


def test_preflight_on_real_xfs(dmod, xfs_mount):
    path = str(xfs_mount / "var" / "lib" / "docker")
    ret = dmod.preflight(path)
    assert ret["ok"] is True, ret["message"]
    assert (ret["mount"], ret["fstype"]) == (str(xfs_mount), "xfs")
    assert ret["message"] == f"overlay2 is supported on {xfs_mount} (xfs)"
    assert dmod.supports_d_type(path) is True
    assert list(xfs_mount.iterdir()) == []


def test_parse_real_xfs_info(dmod, xfs_mount, real_run_all):
    info = dmod.parse_xfs_info(real_run_all(["xfs_info", str(xfs_mount)])["stdout"])
    assert info["ftype"] == 1 and info["crc"] == 1
    assert info["device"].startswith("/dev/loop")


# --- __virtual__ and the state -----------------------------------------------------------------


def test_virtual(dmod, monkeypatch):
    assert dmod.__virtual__() == "docker_storage"
    monkeypatch.setattr(salt.utils.path, "which", lambda name: None)
    loaded, reason = dmod.__virtual__()
    assert loaded is False and "findmnt" in reason


def test_state_virtual(load, dmod):
    loaded, reason = load("_states", "docker_storage", salt={}).__virtual__()
    assert loaded is False and "docker_storage" in reason
    wired = load("_states", "docker_storage", salt={"docker_storage.preflight": dmod.preflight})
    assert wired.__virtual__() == "docker_storage"


def state(load, dmod, *, test: bool):
    return load(
        "_states", "docker_storage", salt={"docker_storage.preflight": dmod.preflight}, test=test
    )


@pytest.mark.parametrize("test_mode", [False, True])
def test_state_passes(load, dmod, tmp_path, test_mode):
    name = str(tmp_path / "docker")
    ret = state(load, dmod, test=test_mode).preflight(name)
    assert ret["name"] == name
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert ret["comment"].startswith("overlay2 is supported on ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("test_mode", [False, True])
def test_state_fails_on_bad_driver(load, dmod, tmp_path, test_mode):
    ret = state(load, dmod, test=test_mode).preflight(str(tmp_path), driver="aufs")
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "'aufs'" in ret["comment"] and "docker:storage_driver" in ret["comment"]


@pytest.mark.parametrize("test_mode", [False, True])
def test_state_fails_on_xfs_ftype0(load, dmod, data, tmp_path, test_mode):
    dmod.__salt__["cmd.run_all"] = Replay(
        findmnt=data("findmnt_xfs.json"), xfs_info=data("xfs_info_ftype0.txt")
    )
    ret = state(load, dmod, test=test_mode).preflight(str(tmp_path))
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "ftype=0" in ret["comment"]
