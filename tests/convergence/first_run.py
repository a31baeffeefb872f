"""The session's first highstate from bare nodes: test mode on every node, then the real run.

It runs once per session, either in the background bring-up (tests/support/cluster_warmup.py,
while the host-level suites run) or in the convergence suite's ``first_run`` fixture. What it saw
is kept as a ``FirstRun``, written to ``.state/`` by the bring-up and read back by the fixture, so
test_highstate.py judges the same runs wherever they ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from saltyard.localcluster.cluster import STATE_DIR, Cluster, HighstateResult
from saltyard.localcluster.progress import step

RESULTS = STATE_DIR / "first-highstate.json"


@dataclass
class FirstRun:
    predicted: dict[str, HighstateResult]  # test mode, one node per role set (test_mode_nodes)
    docker_before: bool  # docker.io on the docker node before test mode ...
    docker_after_test_mode: bool  # ... and after it (test mode installs nothing)
    applied: dict[str, HighstateResult]  # the first real highstate, every node

    def save(self, path: Path = RESULTS) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path = RESULTS) -> FirstRun:
        data = json.loads(path.read_text())

        def results(by_node: dict) -> dict[str, HighstateResult]:
            return {node: HighstateResult(**fields) for node, fields in by_node.items()}

        return cls(
            predicted=results(data["predicted"]),
            docker_before=data["docker_before"],
            docker_after_test_mode=data["docker_after_test_mode"],
            applied=results(data["applied"]),
        )


def docker_node(cluster: Cluster) -> str:
    """A node with the docker role (and so kernel) in the profile under test."""
    return next(n.name for n in cluster.nodes if n.has_role("docker") and n.env == "fat")


def test_mode_nodes(cluster: Cluster) -> list[str]:
    """One node per set of roles: the first of the inventory's order, a container before a VM
    (the docker node, which the test-mode test reads, among them). Nodes with the same roles
    get the same states, so a second prediction of them tests nothing new; on 2 cores, test
    mode on every node took 212 s of a clean-clone run, a third of it the emulated agent-vm
    predicting what agent-prod predicts (docs/next-steps.md item 0)."""
    chosen: dict[tuple[str, ...], str] = {}
    for node in sorted(cluster.nodes, key=lambda n: n.is_vm):
        chosen.setdefault(node.all_roles, node.name)
    wanted = set(chosen.values()) | {docker_node(cluster)}
    return [n.name for n in cluster.nodes if n.name in wanted]


def dpkg_installed(cluster: Cluster, node: str, package: str) -> bool:
    code, out = cluster.exec(node, ["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return code == 0 and "install ok installed" in out


def run(cluster: Cluster) -> FirstRun:
    """Test mode on one node per role set, then the first highstate on every node; each
    node's summary is shown as it finishes (minutes each)."""
    node = docker_node(cluster)
    before = dpkg_installed(cluster, node, "docker.io")
    predicting = test_mode_nodes(cluster)
    step(f"first highstate in test mode, one node per role set: {', '.join(predicting)}")
    predicted = cluster.highstate(
        predicting, "test=True", report=lambda r: step(f"test mode: {r.describe()}")
    )
    after_test = dpkg_installed(cluster, node, "docker.io")
    step("first highstate, every node")
    applied = cluster.highstate(report=lambda r: step(f"first highstate: {r.describe()}"))
    return FirstRun(predicted, before, after_test, applied)
