"""Convergence tests: a fresh local cluster, highstated from bare nodes, checked with testinfra.

The session brings the cluster up from scratch (`saltyard cluster down`, then `up` without the
highstate, so the tests can watch the first one); when other suites run in the same session, that
happens in the background while they run (tests/support/cluster_warmup.py), and this suite runs
last. SALTYARD_REUSE_CLUSTER=1 keeps a running cluster instead (quicker while developing; the
first-highstate tests then see a converged cluster). SALTYARD_TEST_PROFILE picks the inventory
profile (default: full).
"""

from __future__ import annotations

import os

import pytest

from saltyard.localcluster.cluster import Cluster, HighstateResult
from saltyard.localcluster.progress import step
from tests.convergence.helpers import PROFILE, push_test_image
from tests.support import cluster_warmup

REUSE = os.environ.get("SALTYARD_REUSE_CLUSTER") == "1"


@pytest.fixture(scope="session")
def cluster(request) -> Cluster:
    # Bringing the cluster up takes minutes: show its progress lines as they come.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        if cluster_warmup.started():
            # Brought up while the other suites ran (tests/support/cluster_warmup.py).
            cluster_warmup.wait()
            return Cluster(profile=PROFILE)
        cluster = Cluster(profile=PROFILE)
        if not REUSE:
            cluster.down()
        cluster.up(highstate=False)
    return cluster


@pytest.fixture(scope="session")
def docker_node(cluster) -> str:
    """A node with the docker role (and so kernel) in the profile under test."""
    return next(n.name for n in cluster.nodes if n.has_role("docker") and n.env == "fat")


def dpkg_installed(cluster: Cluster, node: str, package: str) -> bool:
    code, out = cluster.exec(node, ["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return code == 0 and "install ok installed" in out


class FirstRun:
    """What the first highstate of the session saw: test mode first, then the real run."""

    def __init__(self, predicted, docker_before, docker_after_test_mode, applied):
        self.predicted: dict[str, HighstateResult] = predicted
        self.docker_before: bool = docker_before
        self.docker_after_test_mode: bool = docker_after_test_mode
        self.applied: dict[str, HighstateResult] = applied


@pytest.fixture(scope="session")
def first_run(request, cluster, docker_node) -> FirstRun:
    # Minutes each: each node's summary shows as it finishes (and which nodes still run).
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        before = dpkg_installed(cluster, docker_node, "docker.io")
        step("first highstate in test mode, every node")
        predicted = cluster.highstate(
            None, "test=True", report=lambda r: step(f"test mode: {r.describe()}")
        )
        after_test = dpkg_installed(cluster, docker_node, "docker.io")
        step("first highstate, every node")
        applied = cluster.highstate(report=lambda r: step(f"first highstate: {r.describe()}"))
    return FirstRun(predicted, before, after_test, applied)


@pytest.fixture(scope="session")
def converged(first_run) -> FirstRun:
    failures = [r.describe() for r in first_run.applied.values() if not r.ok]
    assert not failures, "first highstate failed:\n" + "\n".join(failures)
    return first_run


@pytest.fixture(scope="session")
def registry_image(cluster, converged) -> str:
    """The test task image in the cluster registry (helpers.push_test_image)."""
    return push_test_image(cluster)
