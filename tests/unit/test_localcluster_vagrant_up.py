"""`Cluster.vagrant_up`: nodes Vagrant failed to start get passes of their own, and a node that
never starts stops the bring-up with its name and what Vagrant said (CI shows only the end of a
run's output; stop 26's CI lost lb1 to two parallel passes without saying why)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from saltyard import inventory as inventory_mod
from saltyard.localcluster import cluster as cluster_mod


class FakeEngine:
    """The containers Docker holds, by name; `remove` drops one."""

    def __init__(self, running: set[str]) -> None:
        self.running = running
        self.removed: list[str] = []
        self.containers = self

    def get(self, name: str):
        node = name.removeprefix("saltyard-")
        if node not in self.running:
            raise cluster_mod.docker_errors.NotFound(name)
        return SimpleNamespace(status="running", remove=lambda **_: self.removed.append(name))

    def list(self, **_):
        return []


@pytest.fixture
def fake_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_mod, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(cluster_mod, "ROOT", tmp_path)
    cluster = cluster_mod.Cluster.__new__(cluster_mod.Cluster)
    cluster.inventory = inventory_mod.load(None)
    cluster.profile = "full"
    cluster.nodes = cluster.inventory.profile("full")
    cluster.vms = [n for n in cluster.nodes if n.is_vm]
    cluster.engine = FakeEngine(set())
    monkeypatch.setattr(cluster, "_wait_systemd", lambda node: None)
    monkeypatch.setattr(cluster, "_env", lambda: {})
    return cluster


def containers(cluster) -> list[str]:
    return [n.name for n in cluster.nodes if not n.is_vm]


def test_a_node_left_behind_by_the_parallel_pass_gets_a_pass_of_its_own(fake_cluster, monkeypatch):
    names = containers(fake_cluster)
    record = cluster_mod.ROOT / ".vagrant" / "machines" / "lb1"
    commands: list[list[str]] = []

    def vagrant(command, env, log):
        commands.append(command)
        log.write_text(log.read_text() + "lb1: An error occurred\n")
        if len(commands) == 1:
            fake_cluster.engine.running |= set(names) - {"lb1"}
            record.mkdir(parents=True)  # what Vagrant keeps of lb1 after failing it
            return 1
        fake_cluster.engine.running.add("lb1")
        return 0

    monkeypatch.setattr(cluster_mod, "_run_logged", vagrant)
    fake_cluster.vagrant_up("saltyard/node:test")
    assert commands[0][:4] == ["vagrant", "up", "--provider=docker", "--parallel"]
    assert commands[0][4:] == names
    # The second pass: only lb1, one at a time, with Vagrant's stale record of it gone.
    assert commands[1] == ["vagrant", "up", "--provider=docker", "--no-parallel", "lb1"]
    assert not record.exists()
    assert len(commands) == 2


def test_a_node_that_never_starts_is_named_with_vagrants_last_words(fake_cluster, monkeypatch):
    names = containers(fake_cluster)

    def vagrant(command, env, log):
        fake_cluster.engine.running |= set(names) - {"lb1"}
        log.write_text(log.read_text() + "lb1: Error response from daemon: Address in use\n")
        return 1

    monkeypatch.setattr(cluster_mod, "_run_logged", vagrant)
    with pytest.raises(RuntimeError) as error:
        fake_cluster.vagrant_up("saltyard/node:test")
    message = str(error.value)
    assert "could not start lb1 in 3 passes" in message
    assert "Address in use" in message
    assert str(cluster_mod.STATE_DIR / "vagrant-up.log") in message


def test_a_failed_exit_with_every_node_running_goes_on(fake_cluster, monkeypatch):
    names = containers(fake_cluster)
    calls = []

    def vagrant(command, env, log):
        calls.append(command)
        fake_cluster.engine.running |= set(names)
        return 1

    monkeypatch.setattr(cluster_mod, "_run_logged", vagrant)
    fake_cluster.vagrant_up("saltyard/node:test")
    assert len(calls) == 1
