"""Salt key pairs made on the operator's machine and pre-seeded on the master and the minions.

The master accepts exactly the minions of the inventory: each minion's public key is placed in the
master's accepted-keys folder under the minion's id, and the master's public key is placed on every
minion, so neither side trusts a key on first sight (no auto_accept, no TOFU).
The keys live in a folder outside the repository (.state/pki for the local cluster).
"""

from __future__ import annotations

import os
from pathlib import Path

KEY_SIZE = 2048


def _gen_keys() -> tuple[str, str]:
    # Salt's own generator writes the formats salt-master and salt-minion read.
    import salt.crypt

    private, public = salt.crypt.gen_keys(KEY_SIZE)
    return private, public


def ensure_key_pair(pki_dir: Path, name: str) -> tuple[Path, Path]:
    """Return (private, public) key paths for `name`, generating them once."""
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = pki_dir / f"{name}.pem"
    public = pki_dir / f"{name}.pub"
    if not (private.exists() and public.exists()):
        priv_text, pub_text = _gen_keys()
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(priv_text)
        public.write_text(pub_text)
    return private, public


def ensure_cluster_keys(pki_dir: Path, minion_ids: list[str]) -> None:
    """The master's key pair (named `master`) and one pair per minion id."""
    ensure_key_pair(pki_dir / "master", "master")
    for minion_id in minion_ids:
        ensure_key_pair(pki_dir / "minions", minion_id)
