"""Every node converges from bare, test mode predicts without changing, a second highstate
changes nothing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster


def test_test_mode_predicts_changes_without_making_them(cluster, first_run, docker_node):
    if first_run.docker_before:
        pytest.skip("SALTYARD_REUSE_CLUSTER=1 reused a converged cluster: nothing to predict")
    predicted = first_run.predicted[docker_node]
    assert predicted.ok, predicted.describe()
    engine = next(s for s in predicted.raw.values() if s["__id__"] == "docker-engine")
    # Test mode says the package would be installed (result None) ...
    assert engine["result"] is None, engine
    assert "docker.io" in engine["comment"], engine
    # ... and installs nothing.
    assert not first_run.docker_after_test_mode


def test_test_mode_predicts_on_one_node_of_every_role_set(cluster, first_run):
    if first_run.docker_before:
        pytest.skip("SALTYARD_REUSE_CLUSTER=1 reused a converged cluster: nothing to predict")
    predicted = first_run.predicted
    role_sets = {n.all_roles for n in cluster.nodes}
    covered = {cluster.inventory.node(name).all_roles for name in predicted}
    assert covered == role_sets, sorted(role_sets - covered)
    # Every state of every role renders and predicts without an error or a failure.
    failures = [r.describe() for r in predicted.values() if not r.ok]
    assert not failures, "\n".join(failures)
    # On a bare node each predicts changes, and none reports a change as made (result True).
    for result in predicted.values():
        assert result.changed, result.describe()
        made = [k for k, s in result.raw.items() if s["result"] is True and s["changes"]]
        assert not made, (result.minion, made)


def test_first_highstate_converges_every_node(cluster, first_run):
    results = first_run.applied
    assert set(results) == {n.name for n in cluster.nodes}
    failures = [r.describe() for r in results.values() if not r.ok]
    assert not failures, "\n".join(failures)
    # Every node ran the base states; the docker nodes also ran kernel and docker.
    for node in cluster.nodes:
        ids = {s["__id__"] for s in results[node.name].raw.values()}
        assert {"base-packages", "chrony", "rsyslog"} <= ids, node.name
        has_docker_states = {"docker-engine", "kernel-min-version"} <= ids
        assert has_docker_states == node.has_role("docker"), (node.name, sorted(ids))


def test_second_highstate_reports_zero_changes(cluster, converged):
    results = cluster.highstate()
    for result in results.values():
        assert result.ok, result.describe()
        assert result.changed == [], result.describe()
        assert result.states > 0, result.describe()
