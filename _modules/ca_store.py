"""
The system CA store (``/etc/ssl/certs``), brought up to date the way Debian's
``update-ca-certificates`` does it, in one process.

Why not Debian's tool: it forks five or six times per certificate (``basename``, ``sed``,
``readlink``, ``sed`` again, each in a subshell) for the ~146 certificates of the Mozilla set. On a
node that is a QEMU VM without hardware acceleration (the local cluster's lvs1 and agent-vm),
every fork is emulated: the tool took 142-166 s of those nodes' first highstate, the longest
state of the cluster's bring-up. This module does the same work with one ``openssl rehash`` and
the hooks, and gives the same result: tests/unit/test_ca_store.py runs both on copies of one tree,
step by step, and compares every link, the bundle, the hooks' input and the summary line.

What it does, as the tool does without ``--fresh``:

- a certificate named with a leading ``!`` in ``/etc/ca-certificates.conf`` loses its link;
- every other certificate listed there (under ``/usr/share/ca-certificates``), then every
  ``*.crt`` under ``/usr/local/share/ca-certificates`` (sorted in byte order, which is the
  tool's order under ``LC_ALL=C``; saltyard puts one certificate there), gets a link
  ``/etc/ssl/certs/<name>.pem`` and goes into the bundle ``ca-certificates.crt``;
- when a link was added or removed: orphan links are removed and ``openssl rehash`` remakes the
  hash links;
- the hooks in ``/etc/ca-certificates/update.d`` get the added (``+path``) and removed
  (``-path``) links on their standard input.

A run the tool would make ``--fresh`` (an empty or missing configuration file) is handed to the
tool itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "ca_store"

CERTSCONF = "/etc/ca-certificates.conf"
CERTSDIR = "/usr/share/ca-certificates"
LOCALCERTSDIR = "/usr/local/share/ca-certificates"
ETCCERTSDIR = "/etc/ssl/certs"
CERTBUNDLE = "ca-certificates.crt"
HOOKSDIR = "/etc/ca-certificates/update.d"


def __virtual__() -> str:
    # Always loadable: the ca-certificates package may be installed by the same highstate that
    # calls this module, after the loader has looked.
    return __virtualname__


def _basename(path: str) -> str:
    # The tool: basename "$CERT" .crt (the suffix goes unless it is the whole name).
    base = os.path.basename(path)
    return base[: -len(".crt")] if base.endswith(".crt") and base != ".crt" else base


def _link_name(cert: str) -> str:
    # The tool: basename "$CERT" .crt | sed -e 's/ /_/g' -e 's/[()]/=/g' -e 's/,/_/g'
    base = _basename(cert)
    return base.replace(" ", "_").replace("(", "=").replace(")", "=").replace(",", "_") + ".pem"


def _local_certs(localcertsdir: str) -> list[str]:
    # The tool: find -L "$LOCALCERTSDIR" -type f -name '*.crt' | sort
    found = []
    for root, _dirs, files in os.walk(localcertsdir, followlinks=True):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".crt") and os.path.isfile(path):
                found.append(path)
    return sorted(found, key=os.fsencode)


def _wanted(certsconf, certsdir, localcertsdir, etccertsdir) -> dict[str, Any]:
    """What the tool would make of the configuration: the links to remove (``!`` lines), the
    certificates to link in order (``(link, certificate)``), the bundle, the warnings."""
    etc = Path(etccertsdir)
    conf = Path(certsconf)
    # Lines as the tool's sed filters them (on the raw line), each then read with `read crt`,
    # which drops surrounding blanks.
    raw = conf.read_text().splitlines() if conf.is_file() else []
    unlinks = [
        etc / f"{_basename(f'{certsdir}/{line[1:].strip()}')}.pem"
        for line in raw
        if line.startswith("!")
    ]
    certs, warnings = [], []
    for line in raw:
        if line == "" or line.startswith(("#", "!")):
            continue
        cert = f"{certsdir}/{line.strip()}"
        if os.path.isfile(cert):
            certs.append(cert)
        else:
            warnings.append(f"W: {cert} not found, but listed in {certsconf}.")
    if os.path.isdir(localcertsdir):
        certs += _local_certs(localcertsdir)
    bundle = []
    for cert in certs:
        data = Path(cert).read_bytes()
        # The tool: sed -e '$a\' (a missing last newline added; an empty file adds nothing).
        bundle.append(data if data == b"" or data.endswith(b"\n") else data + b"\n")
    return {
        "unlinks": unlinks,
        "links": [(etc / _link_name(cert), cert) for cert in certs],
        "bundle": b"".join(bundle) if certs else None,
        "warnings": warnings,
    }


def _is_link_to(pem: Path, cert: str) -> bool:
    # The tool re-links unless: test -e "$PEM" && [ "$(readlink "$PEM")" = "$CERT" ]
    return pem.exists() and pem.is_symlink() and os.readlink(pem) == cert


def plan(
    certsconf: str = CERTSCONF,
    certsdir: str = CERTSDIR,
    localcertsdir: str = LOCALCERTSDIR,
    etccertsdir: str = ETCCERTSDIR,
    certbundle: str = CERTBUNDLE,
) -> dict[str, Any]:
    """
    What ``update`` would change, changing nothing: the links it would add (``+path``) and
    remove (``-path``), and whether the bundle would change. The paths are the tool's defaults;
    other values are for tests.

    CLI Example:

    .. code-block:: bash

        salt '*' ca_store.plan
    """
    wanted = _wanted(certsconf, certsdir, localcertsdir, etccertsdir)
    added, seen = [], set()
    for pem, cert in wanted["links"]:
        # A certificate listed twice is linked once (the second time the link is there).
        if pem not in seen and not _is_link_to(pem, cert):
            added.append(f"+{pem}")
        seen.add(pem)
    removed = [f"-{pem}" for pem in wanted["unlinks"] if pem.is_symlink()]
    bundle_path = Path(etccertsdir) / certbundle
    bundle_changes = wanted["bundle"] is not None and (
        not bundle_path.is_file() or bundle_path.read_bytes() != wanted["bundle"]
    )
    return {
        "added": added,
        "removed": removed,
        "bundle": bundle_changes,
        "warnings": wanted["warnings"],
    }


def update(
    certsconf: str = CERTSCONF,
    certsdir: str = CERTSDIR,
    localcertsdir: str = LOCALCERTSDIR,
    etccertsdir: str = ETCCERTSDIR,
    hooksdir: str = HOOKSDIR,
    certbundle: str = CERTBUNDLE,
) -> dict[str, Any]:
    """
    Bring the system CA store up to date, as ``update-ca-certificates`` would. Returns the links
    added and removed, the warnings the tool would print, the hooks that failed, and the tool's
    summary line. The paths are the tool's defaults; other values are for tests.

    CLI Example:

    .. code-block:: bash

        salt '*' ca_store.update
    """
    conf = Path(certsconf)
    if not conf.is_file() or conf.stat().st_size == 0:
        # The tool treats this as --fresh (every link cleared and remade): leave it to the tool.
        return _the_tool(certsconf, certsdir, localcertsdir, etccertsdir, hooksdir, certbundle)

    etc = Path(etccertsdir)
    wanted = _wanted(certsconf, certsdir, localcertsdir, etccertsdir)
    added: list[str] = []
    removed: list[str] = []
    for pem in wanted["unlinks"]:
        if pem.is_symlink():
            pem.unlink()
            removed.append(f"-{pem}")
    for pem, cert in wanted["links"]:
        if not _is_link_to(pem, cert):
            # ln -sf, without a moment where the link is missing.
            tmp = pem.with_name(pem.name + ".saltyard-new")
            tmp.unlink(missing_ok=True)
            os.symlink(cert, tmp)
            os.replace(tmp, pem)
            added.append(f"+{pem}")

    if added or removed:
        # Orphan links make `openssl rehash` fail (Debian #895482).
        for root, dirs, files in os.walk(etc):
            for name in dirs + files:
                path = Path(root, name)
                if path.is_symlink() and not path.exists():
                    path.unlink()
        rehash = subprocess.run(
            ["openssl", "rehash", "."], cwd=etc, capture_output=True, text=True, check=False
        )
        if rehash.returncode != 0:
            raise CommandExecutionError(
                f"openssl rehash {etc} exited {rehash.returncode}: {rehash.stderr.strip()}"
            )

    if wanted["bundle"] is not None:
        new = etc / f"{certbundle}.new"
        new.write_bytes(wanted["bundle"])
        new.chmod(0o644)
        os.replace(new, etc / certbundle)

    hook_errors = _run_hooks(hooksdir, "".join(f"{x}\n" for x in added + removed), etc)
    return {
        "added": added,
        "removed": removed,
        "warnings": wanted["warnings"],
        "hook_errors": hook_errors,
        "summary": f"{len(added)} added, {len(removed)} removed; done.",
    }


def _run_hooks(hooksdir: str, changes: str, cwd: Path) -> list[str]:
    """Each hook run-parts would run gets the changes on stdin; a failing hook is reported and
    the others still run, as the tool does."""
    if not os.path.isdir(hooksdir):
        return []
    listed = subprocess.run(
        ["run-parts", "--test", "--", hooksdir], capture_output=True, text=True, check=False
    )
    errors = []
    for hook in listed.stdout.splitlines():
        ran = subprocess.run([hook], input=changes, cwd=cwd, capture_output=True, text=True)
        if ran.returncode != 0:
            errors.append(f"E: {hook} exited with code {ran.returncode}.")
    return errors


def _the_tool(certsconf, certsdir, localcertsdir, etccertsdir, hooksdir, certbundle) -> dict:
    cmd = [
        "update-ca-certificates",
        "--certsconf",
        certsconf,
        "--certsdir",
        certsdir,
        "--localcertsdir",
        localcertsdir,
        "--etccertsdir",
        etccertsdir,
        "--hooksdir",
        hooksdir,
        "--certbundle",
        certbundle,
    ]
    ran = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if ran.returncode != 0:
        raise CommandExecutionError(
            f"update-ca-certificates exited {ran.returncode}: {ran.stderr.strip()}"
        )
    lines = ran.stdout.splitlines()
    summary = next((line for line in lines if line.endswith("removed; done.")), "")
    return {
        "added": [],
        "removed": [],
        "warnings": [line for line in ran.stderr.splitlines() if line.startswith("W:")],
        "hook_errors": [line for line in lines if line.startswith("E:")],
        "summary": summary,
        "fresh": True,
    }
