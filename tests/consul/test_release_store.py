"""The release's Consul store and lock (saltyard/release/store.py, lock.py) against a real
Consul 1.8 agent with ACLs (default deny), using a token of exactly the orchestration's policy
(salt/consul/policies/release.hcl); and the lb's token (lb.hcl) reading a share, not writing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from saltyard.clients.consul import ConsulClient, ConsulDenied
from saltyard.release import store
from saltyard.release.lock import ReleaseLock
from saltyard.release.plan import load_app
from saltyard.release.record import begin
from tests.support.consul import ConsulAgent
from tests.unit.test_release_plan import ENVS, GOOD

POLICIES = Path(__file__).resolve().parents[2] / "salt" / "consul" / "policies"
PLAN = load_app("hello", GOOD, ENVS)


@pytest.fixture(scope="module")
def tokens():
    return {"release": str(uuid.uuid4()), "lb": str(uuid.uuid4())}


@pytest.fixture(scope="module")
def consul_agent(tmp_path_factory, tokens):
    agent = ConsulAgent(tmp_path_factory.mktemp("consul"), node_name="release-store-consul")
    try:
        agent.start()
        for name in ("release", "lb"):
            agent.create_token(tokens[name], (POLICIES / f"{name}.hcl").read_text(), name)
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def release(consul_agent, tokens) -> ConsulClient:
    return ConsulClient(f"127.0.0.1:{consul_agent.http_port}", tokens["release"])


@pytest.fixture
def lb(consul_agent, tokens) -> ConsulClient:
    return ConsulClient(f"127.0.0.1:{consul_agent.http_port}", tokens["lb"])


def test_the_share_is_written_by_the_release_and_read_by_the_lb(release, lb):
    assert store.set_share(release, "hello", "prod", 5) == "5"
    assert store.set_share(release, "hello", "prod", 12.5) == "12.5"
    # What consul-template on an lb node reads, with the lb's token.
    assert store.get_share(lb, "hello", "prod") == "12.5"
    with pytest.raises(ConsulDenied):
        store.set_share(lb, "hello", "prod", 100)
    assert store.get_share(release, "hello", "prod") == "12.5"


@pytest.mark.parametrize("bad", [-1, 100.5, 1.234, "abc", float("nan"), 1e3])
def test_a_share_the_lb_would_not_accept_is_refused_before_writing(release, bad):
    store.set_share(release, "hello", "uat", 25)
    with pytest.raises(store.StoreError, match="canary share"):
        store.set_share(release, "hello", "uat", bad)
    assert store.get_share(release, "hello", "uat") == "25"


def test_the_record_is_kept_with_check_and_set(release):
    assert store.load_record(release, "cas") == (None, 0)
    plan = load_app("cas", GOOD, ENVS)
    record, _ = begin(None, plan, ENVS, "abc", "1.0.0", 1.0)
    index = store.save_record(release, record, 0)
    loaded, read_index = store.load_record(release, "cas")
    assert loaded == record and read_index == index

    # Two runs read the same index; the second write is refused, the first one kept.
    record.start("build", 2.0)
    record.finish("build", 3.0, sha="f" * 40)
    store.save_record(release, record, index)
    stale, _ = begin(None, plan, ENVS, "zzz", "9.9.9", 4.0)
    with pytest.raises(store.StoreError, match="changed since it was read"):
        store.save_record(release, stale, index)
    assert store.load_record(release, "cas")[0].step("build").detail["sha"] == "f" * 40


def test_the_lock_works_with_the_release_token_only(release, lb):
    with ReleaseLock(release, "hello"):
        pass
    with pytest.raises(ConsulDenied):
        ReleaseLock(lb, "hello").acquire()
