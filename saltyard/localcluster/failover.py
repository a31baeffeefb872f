"""Registry failover through the LVS director, measured: one registry stops, and pulls through
the VIP are timed until they succeed again. Used by the failover test and by
benchmarks/registry_failover.py (which prints the figures kept in docs/benchmarks.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from saltyard.clients.registry import RegistryClient


@dataclass
class FailoverResult:
    stopped: str
    recovered_after: float  # seconds from the stop to the first of `streak` successful pulls
    failed_pulls: int  # pulls through the VIP that failed meanwhile
    pulls: int


def pull_once(client: RegistryClient, repository: str, tag: str) -> str:
    """What a pull starts with: the manifest, then its config blob (raises on any failure);
    returns the manifest's digest. Connections are not kept: each pull is routed by the director
    afresh, as a new client's is."""
    client.close()
    manifest = client.manifest(repository, tag)
    client.blob(repository, manifest.json()["config"]["digest"])
    return manifest.digest


def measure(
    cluster,
    registry_node: str,
    client: RegistryClient,
    repository: str,
    tag: str,
    *,
    streak: int = 20,
    interval: float = 0.1,
    timeout: float = 60.0,
) -> FailoverResult:
    """Stop docker-registry on `registry_node`, then pull through the VIP every `interval`
    seconds until `streak` pulls in a row succeed; the registry is started again before
    returning. A pull that lands on the stopped registry fails (connection refused) until the
    director's health check takes it out of the virtual server."""
    pulls = failed = 0
    first_good: float | None = None
    good_in_row = 0
    cluster.exec(registry_node, ["systemctl", "stop", "docker-registry"])
    stopped_at = time.monotonic()
    try:
        while good_in_row < streak:
            if time.monotonic() - stopped_at > timeout:
                raise TimeoutError(
                    f"pulls through the VIP still fail {timeout:.0f}s after {registry_node} "
                    f"stopped ({failed} of {pulls} failed)"
                )
            pulls += 1
            try:
                pull_once(client, repository, tag)
            except Exception:  # any failed pull restarts the streak
                failed += 1
                good_in_row, first_good = 0, None
            else:
                if good_in_row == 0:
                    first_good = time.monotonic()
                good_in_row += 1
            time.sleep(interval)
    finally:
        cluster.exec(registry_node, ["systemctl", "start", "docker-registry"])
    return FailoverResult(registry_node, first_good - stopped_at, failed, pulls)
