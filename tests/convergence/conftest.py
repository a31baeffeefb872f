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

from saltyard.localcluster.cluster import Cluster
from tests.convergence import first_run as first_run_mod
from tests.convergence.first_run import FirstRun
from tests.convergence.helpers import PROFILE, push_test_image
from tests.support import cluster_warmup

REUSE = os.environ.get("SALTYARD_REUSE_CLUSTER") == "1"


def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests marked ``last`` (they leave a node down, restarting it without waiting) after every
    other convergence test; otherwise the order stays the files' order."""
    last = [item for item in items if item.get_closest_marker("last")]
    items[:] = [item for item in items if not item.get_closest_marker("last")] + last


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
    return first_run_mod.docker_node(cluster)


@pytest.fixture(scope="session")
def first_run(request, cluster) -> FirstRun:
    if cluster_warmup.started():
        # The background bring-up ran it and kept what it saw (its output was shown by the
        # cluster fixture).
        return FirstRun.load()
    # Minutes each: each node's summary shows as it finishes (and which nodes still run).
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return first_run_mod.run(cluster)


@pytest.fixture(scope="session")
def converged(first_run) -> FirstRun:
    failures = [r.describe() for r in first_run.applied.values() if not r.ok]
    assert not failures, "first highstate failed:\n" + "\n".join(failures)
    return first_run


@pytest.fixture(scope="session")
def registry_image(cluster, converged) -> str:
    """The test task image in the cluster registry (helpers.push_test_image)."""
    return push_test_image(cluster)
