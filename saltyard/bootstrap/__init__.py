"""Bootstrap Salt on the inventory's nodes: wheelhouse, pre-seeded keys, then the pyinfra deploy.

One entry point for the local cluster (`connect="docker"`) and for real hosts (`connect="ssh"`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from saltyard import inventory
from saltyard.bootstrap import keys, wheelhouse
from saltyard.localcluster.progress import step

ROOT = Path(__file__).resolve().parent.parent.parent
# Where the master serves this repository from (file_roots, pillar_roots, the inventory).
REPO_ON_MASTER = "/srv/saltyard"


def run(
    connect: str,
    profile: str,
    state_dir: Path,
    site: str = "local",
    env: dict[str, str] | None = None,
) -> None:
    """Build the wheelhouse and keys in `state_dir`, then run the deploy on the profile's nodes."""
    inv = inventory.load()
    wheelhouse.build(state_dir)
    keys.ensure_cluster_keys(state_dir / "pki", [n.name for n in inv.nodes])
    step(f"bootstrapping Salt with pyinfra over {connect} (saltyard/bootstrap/deploy.py)")
    subprocess.run(
        [
            str(Path(sys.executable).with_name("pyinfra")),
            "-y",
            "--no-wait",
            "saltyard/bootstrap/pyinfra_inventory.py",
            "saltyard/bootstrap/deploy.py",
        ],
        cwd=ROOT,
        env=(env or dict(os.environ))
        | {
            "SALTYARD_CONNECT": connect,
            "SALTYARD_PROFILE": profile,
            "SALTYARD_STATE_DIR": str(state_dir),
            "SALTYARD_SITE": site,
        },
        check=True,
    )
