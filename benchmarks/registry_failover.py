"""Benchmark: registry failover behind the LVS director in the local cluster.

    .venv/bin/python benchmarks/registry_failover.py [--rounds 3]

Needs the local cluster up and converged (`make up`) and an image in the registry pair; it
pushes nothing itself: it uses `--image` (default: the test image the convergence tests push,
`<VIP>:5000/saltyard-test/web:1`). Each round stops docker-registry on one registry (the two
in turn), pulls through the VIP every 0.1 s (manifest + config blob, a fresh connection each
time, as a new client) until 20 pulls in a row succeed, and starts the registry again; then it
waits until the director has the registry back in the virtual server. It prints, per round and
as a summary, the time from the stop to the first pull of the good streak and the pulls that
failed meanwhile. Goal (issue 5): pulls succeed again within the health-check interval
(docs/lvs.md: 5 s with the lvs defaults).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saltyard.clients.registry import RegistryClient  # noqa: E402
from saltyard.localcluster.cluster import Cluster  # noqa: E402
from saltyard.localcluster.failover import measure  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="", help="VIP:PORT/REPOSITORY:TAG")
    args = parser.parse_args()

    cluster = Cluster()
    build = next(n.name for n in cluster.nodes if n.has_role("build"))
    lvs = next(n.name for n in cluster.nodes if n.has_role("lvs"))
    registries = [n for n in cluster.nodes if n.has_role("registry")]
    registry1 = registries[0].name

    port = cluster.pillar(build, "registry:port") or 5000
    vip = f"{cluster.pillar(build, 'registry:vip:address')}:{port}"
    image = args.image or f"{vip}/saltyard-test/web:1"
    host, path = image.split("/", 1)
    repository, tag = path.rsplit(":", 1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ca = Path(tmp) / "ca.pem"
        ca.write_text(cluster.pillar(build, "pki:ca"))
        client = RegistryClient(
            f"https://{host}",
            username="pull",
            password=cluster.pillar(registry1, "registry:users:pull"),
            ca_file=str(ca),
        )
        client.manifest(repository, tag)  # the image must be there before anything stops
        for round_ in range(args.rounds):
            registry = registries[round_ % len(registries)]
            result = measure(cluster, registry.name, client, repository, tag)
            results.append(result)
            print(
                f"round {round_ + 1}: {registry.name} stopped: pulls through {host} good again "
                f"after {result.recovered_after:.2f} s ({result.failed_pulls} of "
                f"{result.pulls} pulls failed)",
                flush=True,
            )
            try:
                wait_until(
                    lambda r=registry: (
                        f"-r {r.address}:" in cluster.exec(lvs, ["ipvsadm", "-S", "-n"])[1]
                    ),
                    60,
                    0.5,
                    f"{registry.name} back behind the VIP",
                )
            except AssertionError as exc:
                print(exc, file=sys.stderr)
                return 1
    times = [r.recovered_after for r in results]
    print(
        f"failover over {len(times)} rounds: median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s; failed pulls per round: {[r.failed_pulls for r in results]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
