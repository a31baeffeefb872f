"""
Kernel release checks for saltyard nodes.

The platform (Docker's overlay2 driver among others) needs a minimum kernel, so the highstate
checks the running kernel before it changes anything on a node. This module parses distro
kernel release strings into comparable tuples; the ``kernel_check`` state wraps ``meets``.

Only the numeric part of a release is compared: ``X.Y[.Z...]`` and, when the distro appends an
ABI or build number right after the first dash (Debian/Ubuntu ``4.4.0-210-generic``, RHEL
``3.10.0-1160.el7.x86_64``), that number too. Anything else after the dash (``-rc3``,
``-fc-v669``, ``-cloud-amd64`` after the ABI number) is a flavour tag and is ignored.
"""

from __future__ import annotations

import os
import re
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "kernel_check"

# Dotted numeric prefix (at least major.minor, as every Linux release has), then optionally
# "-<digits>" where the digits are not glued to letters: "-210-generic" and "-1160.el7" are
# ABI/build numbers, "-rc3" and "-1ubuntu" are not.
_RELEASE_RE = re.compile(r"^(?P<dotted>\d+(?:\.\d+)+)(?:-(?P<abi>\d+)(?![0-9A-Za-z]))?")


def __virtual__() -> str | tuple[bool, str]:
    # running() reads uname(2); without it there is no running kernel to check.
    if not hasattr(os, "uname"):
        return (False, "kernel_check: os.uname() is not available on this platform")
    return __virtualname__


def parse(release: str) -> tuple[int, ...]:
    """
    Parse a kernel release string into a tuple of ints.

    ``4.4.0-210-generic`` -> ``(4, 4, 0, 210)``, ``6.1.0-28-cloud-amd64`` -> ``(6, 1, 0, 28)``,
    ``4.4.27`` -> ``(4, 4, 27)``, ``5.10.0-rc3`` -> ``(5, 10, 0)``.
    Raises CommandExecutionError naming the string if it is not a kernel release.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_check.parse 4.4.0-210-generic
    """
    # YAML and the Salt CLI turn an unquoted 4.10 into the float 4.1; refuse rather than
    # silently compare against the wrong version.
    if not isinstance(release, str):
        raise CommandExecutionError(
            f"kernel release must be a string, got {type(release).__name__} {release!r} "
            "(quote the version in YAML or on the command line)"
        )
    match = _RELEASE_RE.match(release.strip())
    if match is None:
        raise CommandExecutionError(f"not a kernel release: {release!r}")
    parts = [int(p) for p in match.group("dotted").split(".")]
    if match.group("abi") is not None:
        parts.append(int(match.group("abi")))
    return tuple(parts)


def compare(a: str, b: str) -> int:
    """
    Compare two kernel releases numerically: -1 if a < b, 0 if equal, 1 if a > b.

    Missing trailing parts count as 0, so ``4.4.27 == 4.4.27-0`` and
    ``4.4.0-210-generic < 4.4.27`` (0 < 27 at the third position).

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_check.compare 4.4.0-210-generic 4.4.27
    """
    pa, pb = parse(a), parse(b)
    width = max(len(pa), len(pb))
    pa += (0,) * (width - len(pa))
    pb += (0,) * (width - len(pb))
    return (pa > pb) - (pa < pb)


def running() -> str:
    """
    Return the release of the running kernel.

    Read live from uname(2) rather than the ``kernelrelease`` grain: the grain is a snapshot
    taken when the minion started, and this check is about what is running now.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_check.running
    """
    return os.uname().release


def meets(min_version: str) -> dict[str, Any]:
    """
    Check the running kernel against a minimum release.

    Returns ``{'running': ..., 'minimum': ..., 'ok': bool}``; raises CommandExecutionError if
    either release cannot be parsed.

    CLI Example:

    .. code-block:: bash

        salt '*' kernel_check.meets 4.4.27
    """
    current = running()
    return {
        "running": current,
        "minimum": min_version,
        "ok": compare(current, min_version) >= 0,
    }
