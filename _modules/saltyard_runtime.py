"""
What saltyard's own Python code on a node is, so that its daemons restart when it changes.

The bootstrap installs the saltyard wheel into a virtualenv (``/opt/saltyard/venv``); Salt does
not. A daemon run from that virtualenv (the bridge, the Marathon-API emulator) keeps the old code
in memory after a new wheel is installed. The states write ``code_digest`` into a small file that
the daemon's service watches, so a new wheel restarts it and an unchanged one changes nothing.

The digest covers the package's files as the daemon's interpreter imports them (a wheel built
from changed code may keep its version string), found through that interpreter, since a site may
run the daemons from another virtualenv than the minion's.
"""

from __future__ import annotations

import subprocess

from salt.exceptions import CommandExecutionError

__virtualname__ = "saltyard_runtime"

# Run by the daemon's own interpreter: every file of the package (not its bytecode caches), by
# path and content, in a stable order.
_DIGEST = """
import hashlib, importlib.util, pathlib, sys
spec = importlib.util.find_spec(sys.argv[1])
if spec is None or not spec.origin:
    sys.exit(f"no package {sys.argv[1]!r}")
root = pathlib.Path(spec.origin).parent
digest = hashlib.sha256()
for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
    digest.update(str(path.relative_to(root)).encode() + b"\\0" + path.read_bytes() + b"\\0")
print(digest.hexdigest())
"""


def __virtual__() -> str:
    return __virtualname__


def code_digest(python: str = "/opt/saltyard/venv/bin/python", package: str = "saltyard") -> str:
    """
    The sha256 of the files of ``package`` as the interpreter ``python`` imports it.

    CLI Example:

    .. code-block:: bash

        salt control1 saltyard_runtime.code_digest
        salt control1 saltyard_runtime.code_digest python=/opt/saltyard/venv/bin/python
    """
    try:
        proc = subprocess.run(
            [python, "-c", _DIGEST, package],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        raise CommandExecutionError(f"cannot run {python}: {exc}") from exc
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandExecutionError(f"{python} cannot import {package!r}: {reason}")
    return proc.stdout.strip()
