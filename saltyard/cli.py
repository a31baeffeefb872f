"""The operator CLI.

saltyard inventory check [PATH]
saltyard cluster up [--profile quick] [--no-highstate]
saltyard cluster highstate [NODE ...] [--test]
saltyard cluster down
saltyard bootstrap --ssh [--profile NAME]     # real hosts over SSH (see README)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from saltyard import inventory


def _cluster(args):
    from saltyard.localcluster.cluster import Cluster

    return Cluster(profile=args.profile)


def cmd_cluster(args) -> int:
    cluster = _cluster(args)
    if args.action == "up":
        results = cluster.up(highstate=not args.no_highstate)
        if results and not all(r.ok for r in results.values()):
            print("saltyard: some nodes did not converge (see above)", file=sys.stderr)
            return 1
        return 0
    if args.action == "down":
        cluster.down()
        return 0
    if args.action == "highstate":
        # The minions do not sync custom modules by themselves (autoload_dynamic_modules is
        # off, saltyard/bootstrap/deploy.py): this command runs what the checkout has.
        cluster.sync(args.nodes or None)
        extra = ["test=True"] if args.test else []
        results = cluster.highstate(
            args.nodes or None, *extra, report=lambda result: print(result.describe(), flush=True)
        )
        return 0 if all(r.ok for r in results.values()) else 1
    raise AssertionError(args.action)


def cmd_bootstrap(args) -> int:
    """Bootstrap real hosts over SSH with the same pyinfra deploy as the local cluster."""
    from saltyard import bootstrap

    bootstrap.run("ssh", args.profile, Path(args.state_dir).resolve(), site=args.site)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="saltyard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_inv = sub.add_parser("inventory", help="validate the inventory")
    p_inv.add_argument("action", choices=["check"])
    p_inv.add_argument("path", nargs="?")

    p_cluster = sub.add_parser("cluster", help="the local cluster")
    p_cluster.add_argument("action", choices=["up", "down", "highstate"])
    p_cluster.add_argument("nodes", nargs="*")
    p_cluster.add_argument("--profile", default=os.environ.get("SALTYARD_PROFILE", "full"))
    p_cluster.add_argument("--no-highstate", action="store_true")
    p_cluster.add_argument("--test", action="store_true", help="highstate in test mode")

    p_boot = sub.add_parser("bootstrap", help="bootstrap real hosts over SSH")
    p_boot.add_argument("--ssh", action="store_true", required=True)
    p_boot.add_argument("--profile", default="full")
    p_boot.add_argument("--site", default="example-prod")
    p_boot.add_argument("--state-dir", default=os.path.expanduser("~/.saltyard"))

    args = parser.parse_args(argv)
    try:
        if args.command == "inventory":
            return inventory.main(["check"] + ([args.path] if args.path else []))
        if args.command == "cluster":
            return cmd_cluster(args)
        return cmd_bootstrap(args)
    except inventory.InventoryError as exc:
        print(f"saltyard: invalid inventory: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"saltyard: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
