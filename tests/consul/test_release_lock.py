"""The release lock (saltyard/release/lock.py) against a real Consul 1.8 agent on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from saltyard.clients.consul import ConsulClient
from saltyard.release.lock import LockHeld, ReleaseLock, lock_key
from tests.support.consul import ConsulAgent
from tests.support.wait import wait_until


@pytest.fixture(scope="module")
def consul_agent(tmp_path_factory):
    agent = ConsulAgent(tmp_path_factory.mktemp("consul"), node_name="release-lock-consul")
    try:
        agent.start()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def client(consul_agent):
    return ConsulClient(f"127.0.0.1:{consul_agent.http_port}", consul_agent.master)


def test_a_second_run_is_refused_naming_the_holder(client):
    with ReleaseLock(client, "hello", what="release 1.4.0 (ref abc123)"):
        with pytest.raises(LockHeld) as held:
            ReleaseLock(client, "hello", what="release 1.5.0").acquire()
        message = str(held.value)
        assert "another release run holds saltyard/release/hello/lock" in message
        assert "release 1.4.0 (ref abc123)" in message
        # Another app is not held up.
        with ReleaseLock(client, "other"):
            pass
    # Released: the next run goes.
    with ReleaseLock(client, "hello"):
        pass


def test_the_lock_outlives_its_ttl_while_the_run_lives(client):
    with ReleaseLock(client, "long", ttl=2) as lock:
        time.sleep(6)  # three TTLs: only the renewals keep it
        assert not lock.lost.is_set()
        with pytest.raises(LockHeld):
            ReleaseLock(client, "long").acquire()


def test_a_run_that_dies_frees_the_lock_within_twice_its_ttl(client, consul_agent):
    dead = ReleaseLock(client, "crash", ttl=2)
    dead.acquire()
    # The run dies: its renewals stop, nothing is released.
    dead._stop.set()
    dead._thread.join()
    died = time.monotonic()
    with pytest.raises(LockHeld):
        ReleaseLock(client, "crash").acquire()

    # (Consul checks TTLs lazily: up to twice the TTL, plus its own sweep.)
    took = wait_until(lambda: _try(client, "crash") and time.monotonic() - died, 15, interval=0.25)
    assert took <= 2 * 2 + 2, took
    _, entry = consul_agent.admin().kv.get(lock_key("crash"))
    assert entry is None or entry.get("Session") is None


def _try(client, app) -> bool:
    lock = ReleaseLock(client, app)
    try:
        lock.acquire()
    except LockHeld:
        return False
    lock.release()
    return True


def test_concurrent_runs_one_wins(client):
    """Ten runs start at once: exactly one gets the lock."""
    results: list[str] = []
    barrier = threading.Barrier(10)
    holders: list[ReleaseLock] = []

    def run():
        lock = ReleaseLock(client, "race")
        barrier.wait()
        try:
            lock.acquire()
        except LockHeld:
            results.append("refused")
            return
        results.append("won")
        holders.append(lock)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["refused"] * 9 + ["won"]
    holders[0].release()
