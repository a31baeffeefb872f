"""
An apt keyring file (for ``deb [signed-by=PATH] ...``) from a URL, installed only when its keys
are exactly the expected ones.

.. code-block:: yaml

    /usr/share/keyrings/mesos.gpg:
      apt_keyring.present:
        - source: https://packages.example.internal/mesos/mesos.gpg
        - fingerprints: [0123456789ABCDEF0123456789ABCDEF01234567]

The file is fetched (``cp.cache_file``: https, salt:// or a local path; plain http is refused,
since the fingerprint check is the only thing that vouches for the key and an https fetch at
least keeps a man in the middle from swapping keys and fingerprints together in transit). The
primary keys' fingerprints, read with ``gpg --show-keys --with-colons``, must be exactly
``fingerprints``; otherwise the state fails naming the expected and the found ones, and the
keyring on disk stays as it was. An ASCII-armored key is stored dearmored (binary), which
``signed-by`` accepts under any file name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

__virtualname__ = "apt_keyring"

_FINGERPRINT = re.compile(r"^([0-9A-F]{40}|[0-9A-F]{64})$")


def __virtual__() -> str | tuple[bool, str]:
    return __virtualname__


def _gpg(args: list[str], data: bytes) -> bytes:
    # A throwaway home: reading a key must not create or touch root's ~/.gnupg.
    with tempfile.TemporaryDirectory(prefix="saltyard-apt-keyring-") as home:
        proc = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--no-tty", *args],
            input=data,
            capture_output=True,
            check=False,
            timeout=60,
        )
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode(errors="replace").strip() or "gpg failed")
    return proc.stdout


def _fingerprints(data: bytes) -> list[str]:
    """The fingerprints of the primary keys in ``data`` (a key file, armored or binary), in
    file order, upper case; ValueError when gpg reads no key from it."""
    try:
        listing = _gpg(["--show-keys", "--with-colons", "--with-fingerprint"], data).decode()
    except ValueError as exc:
        raise ValueError(f"no OpenPGP key in it ({exc})") from exc
    found: list[str] = []
    primary = False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            primary = fields[0] == "pub"
        elif fields[0] == "fpr" and primary:
            # The first fpr after a pub line is that primary key's; subkeys' are not listed.
            found.append(fields[9].upper())
            primary = False
    if not found:
        raise ValueError("no OpenPGP key in it")
    return found


def _check(data: bytes, expected: list[str]) -> str | None:
    """Why ``data`` is not a keyring of exactly the ``expected`` primary keys, or None."""
    want = sorted({str(f).replace(" ", "").upper() for f in expected})
    try:
        have = sorted(set(_fingerprints(data)))
    except ValueError as exc:
        return str(exc)
    if have != want:
        return f"its keys are {', '.join(have)}, expected {', '.join(want)}"
    return None


def _dearmored(data: bytes) -> bytes:
    if data.lstrip().startswith(b"-----BEGIN PGP"):
        return _gpg(["--dearmor"], data)
    return data


def present(name: str, source: str, fingerprints: list[str], mode: str = "0644") -> dict:
    """
    Ensure the apt keyring ``name`` holds the key(s) from ``source`` whose primary fingerprints
    are exactly ``fingerprints``.

    name
        The keyring's path (what ``signed-by=`` names).
    source
        https://, salt:// or a local path; http:// is refused.
    fingerprints
        The primary keys' fingerprints (40 or 64 hex digits; spaces allowed).
    mode
        The file's mode.

    SLS Example:

    .. code-block:: yaml

        mesos-keyring:
          apt_keyring.present:
            - name: /usr/share/keyrings/mesos.gpg
            - source: https://packages.example.internal/mesos/mesos.gpg
            - fingerprints:
              - 0123456789ABCDEF0123456789ABCDEF01234567
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    if not os.path.isabs(name):
        ret["comment"] = f"keyring path {name!r} is not absolute"
        return ret
    scheme = str(source).partition("://")[0] if "://" in str(source) else ""
    if scheme not in ("https", "salt") and not (scheme == "" and str(source).startswith("/")):
        ret["comment"] = (
            f"keyring source {source!r} for {name}: fetch it over https (or salt://, a local path)"
        )
        return ret
    if isinstance(fingerprints, str):
        fingerprints = [fingerprints]
    wanted = [str(f).replace(" ", "").upper() for f in fingerprints or []]
    bad = [f for f in wanted if not _FINGERPRINT.match(f)]
    if not wanted or bad:
        ret["comment"] = (
            f"fingerprints {bad or fingerprints!r} for {name}: each must be 40 (or 64) hex digits"
        )
        return ret
    if not shutil.which("gpg"):
        if __opts__["test"]:
            # On a bare node the gpg package is installed by an earlier state of the same run.
            ret["result"] = None
            ret["changes"] = {"old": [], "new": sorted(set(wanted))}
            ret["comment"] = (
                f"keyring {name} would be fetched from {source} and checked (gpg is not "
                "installed yet)"
            )
            return ret
        ret["comment"] = f"gpg is not installed: needed to check the keys of {name}"
        return ret

    cached = __salt__["cp.cache_file"](source)
    if not cached:
        ret["comment"] = f"cannot fetch keyring {source}"
        return ret
    with open(cached, "rb") as handle:
        fetched = handle.read()
    problem = _check(fetched, wanted)
    if problem:
        ret["comment"] = f"refusing keyring {source} for {name}: {problem}"
        return ret
    keyring = _dearmored(fetched)

    current = None
    if os.path.exists(name):
        with open(name, "rb") as handle:
            current = handle.read()
    want_mode = int(str(mode), 8)
    mode_ok = current is not None and (os.stat(name).st_mode & 0o7777) == want_mode
    if current == keyring and mode_ok:
        ret["result"] = True
        ret["comment"] = f"keyring {name} holds {', '.join(wanted)}"
        return ret
    change = {"old": sorted(set(_fingerprints_or_none(current))), "new": sorted(set(wanted))}
    if __opts__["test"]:
        ret["result"] = None
        ret["changes"] = change
        ret["comment"] = f"keyring {name} would be written from {source}"
        return ret
    os.makedirs(os.path.dirname(name), exist_ok=True)
    # Written beside it and renamed: apt never reads a half-written keyring.
    tmp = f"{name}.saltyard-new"
    with open(tmp, "wb") as handle:
        handle.write(keyring)
    os.chmod(tmp, want_mode)
    os.replace(tmp, name)
    ret["result"] = True
    ret["changes"] = change
    ret["comment"] = f"keyring {name} written from {source}"
    return ret


def _fingerprints_or_none(data: bytes | None) -> list[str]:
    """The primary fingerprints of ``data``, or [] for no file or no key (for the diff)."""
    if not data:
        return []
    try:
        return _fingerprints(data)
    except ValueError:
        return []
