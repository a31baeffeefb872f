"""The bridge's side of IPAM reconciliation (--ipam-reconcile; docs/bridge.md, docs/ipam.md):
allocation records whose Marathon task is gone are freed after --ipam-grace, and nothing else.

Real parts only: the Consul dev agent with ACLs on (the bridge's token holds exactly
salt/consul/policies/bridge.hcl, or that policy less its IPAM rule), the Marathon-API emulator
running a real app as containers, bridges as subprocesses. The records are written into Consul
the way the IPAM plugin writes them (saltyard.ipam.store.Allocation), e.g. as the plugin of a
host that is gone for good left them. Each test uses a prefix of its own under saltyard/ipam/
and a 1 s resync, so that it takes seconds.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from saltyard.bridge.consul_store import ConsulStore, LockLost
from saltyard.bridge.ipam import TaskIndex
from saltyard.bridge.settings import SettingsError, build_parser, parse_settings
from saltyard.ipam.store import Allocation, now_text

GONE_TASK = "gone_web.instance-5b2c0a8e-0000-4000-8000-000000000001._app.1"


def record(
    pool: str, address: str, task_id: str | None, host: str = "agent-gone", updated: str = ""
) -> str:
    """The JSON the IPAM plugin stores for an allocation (with the task id its host's
    reconciler fills in). ``updated`` makes a rewrite differ: Consul keeps the ModifyIndex of a
    key written again with the same value."""
    return Allocation(
        updated=updated or None,
        pool=pool,
        address=address,
        host=host,
        mac="02:42:ac:1e:00:8d",
        container="cf07d980e473" if task_id else None,
        container_name="mesos-1234" if task_id else None,
        task_id=task_id,
        time=now_text(),
    ).value()


class Keys:
    """Records under one test's own prefix, written and read as the operator (master token);
    all deleted at the end."""

    def __init__(self, consul_agent):
        self.kv = consul_agent.admin().kv
        self.prefix = f"saltyard/ipam/test-{uuid.uuid4().hex[:8]}/"

    def key(self, pool: str, address: str) -> str:
        return f"{self.prefix}{pool}/{address}"

    def put(self, key: str, value: str) -> int:
        assert self.kv.put(key, value)
        return self.index(key)

    def index(self, key: str) -> int | None:
        entry = self.kv.get(key)[1]
        return entry["ModifyIndex"] if entry else None

    def cleanup(self) -> None:
        self.kv.delete(self.prefix, recurse=True)


@pytest.fixture
def keys(consul_agent):
    made = Keys(consul_agent)
    yield made
    made.cleanup()


def ipam_bridge(make_bridge, keys: Keys, name: str, grace: float, **kwargs):
    return make_bridge(
        name,
        f"saltyard/bridge/{name}",
        "--resync-interval",
        "1",
        "--ipam-reconcile",
        "--ipam-grace",
        f"{grace:g}",
        "--ipam-prefix",
        keys.prefix,
        **kwargs,
    )


def wait_gone(keys: Keys, key: str, timeout: float, started: float) -> float:
    """Poll ``key`` every 50 ms until it is gone; seconds from ``started`` to the first poll
    that found it gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if keys.index(key) is None:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{key} still allocated after {timeout}s")


def ipam_health(bridge) -> dict:
    return bridge.health()["ipam"]


@pytest.fixture(scope="module")
def live_app(marathon):
    """A real app (one healthy task, host port) launched through the emulator: its task id is
    one Marathon lists."""
    from tests.support.bridge import healthy_tasks, web_app
    from tests.support.wait import wait_until

    app = web_app("/ipamlive/web", 1)
    marathon.update_app(app["id"], app, force=True)
    try:
        tasks = wait_until(
            lambda: healthy_tasks(marathon, app["id"]), 90, message="the live app's task healthy"
        )
        yield app["id"], next(iter(tasks))
    finally:
        marathon.delete_app(app["id"], force=True)


# ---------------------------------------------------------------------- freeing


def test_an_allocation_whose_task_marathon_does_not_know_is_freed_after_the_grace_not_before(
    make_bridge, keys, h
):
    """Records a gone host's plugin left: one with a task id Marathon does not list (freed once
    the grace is over, not a moment sooner), one without a task id (the host plugin's business:
    never touched), one that is not an allocation record at all (not touched either)."""
    grace = 4.0
    bridge = ipam_bridge(make_bridge, keys, "ipam-free", grace).start()
    bridge.wait_active()
    orphan = keys.key("tasks", "172.30.0.141")
    untracked = keys.key("tasks", "172.30.0.142")
    foreign = keys.key("notes", "readme")
    untracked_index = keys.put(untracked, record("tasks", "172.30.0.142", None))
    foreign_index = keys.put(foreign, "not an allocation")
    written = time.monotonic()  # before the put: the bridge cannot see it any sooner
    keys.put(orphan, record("tasks", "172.30.0.141", GONE_TASK))

    h.wait_until(lambda: orphan in ipam_health(bridge)["missing"], 5, message="seen missing")
    gone_after = wait_gone(keys, orphan, grace + 6, written)
    assert gone_after >= grace, f"freed {gone_after:.2f}s after it was written (grace {grace})"

    # Two more resyncs: the other two are still there, unchanged.
    resyncs = bridge.health()["counters"]["resyncs"]
    h.wait_until(
        lambda: bridge.health()["counters"]["resyncs"] >= resyncs + 2, 10, message="2 resyncs"
    )
    assert keys.index(untracked) == untracked_index
    assert keys.index(foreign) == foreign_index
    health = bridge.health()
    assert health["ipam"]["missing"] == {}
    assert health["counters"]["ipam_frees"] == 1
    assert health["counters"]["ipam_conflicts"] == 0
    assert "ipam" not in health["counters"]["errors"]
    metrics = bridge.metrics()
    assert metrics["saltyard_bridge_ipam_frees_total"] == 1
    assert metrics["saltyard_bridge_ipam_missing"] == 0
    log = bridge.log()
    assert (
        f"freed 172.30.0.141 of pool tasks (host agent-gone, task {GONE_TASK}): its Marathon "
        "task has been gone for "
    ) in log
    assert f"(grace {grace:g}s;" in log


def test_an_allocation_of_a_running_task_is_never_freed(make_bridge, keys, live_app, marathon, h):
    """A record of the app's real task stays across resyncs well past the grace, while a
    record of a task Marathon does not know, written at the same moment, is freed (so the
    bridge was reconciling all along)."""
    app_id, task_id = live_app
    grace = 2.0
    bridge = ipam_bridge(make_bridge, keys, "ipam-live", grace).start()
    bridge.wait_active()
    live = keys.key("tasks", "172.30.0.150")
    orphan = keys.key("tasks", "172.30.0.151")
    live_index = keys.put(live, record("tasks", "172.30.0.150", task_id, host="agent-fat"))
    written = time.monotonic()
    keys.put(orphan, record("tasks", "172.30.0.151", GONE_TASK))
    assert wait_gone(keys, orphan, grace + 6, written) >= grace
    resyncs = bridge.health()["counters"]["resyncs"]
    h.wait_until(
        lambda: bridge.health()["counters"]["resyncs"] >= resyncs + 3, 10, message="3 resyncs"
    )
    assert keys.index(live) == live_index, "the running task's allocation was touched"
    assert task_id in h.healthy_tasks(marathon, app_id)  # it was running all along
    health = bridge.health()
    assert live not in health["ipam"]["missing"]
    assert health["counters"]["ipam_frees"] == 1


def test_an_allocation_rewritten_during_the_grace_is_not_freed_at_the_old_deadline(
    make_bridge, keys, h
):
    """The clock belongs to the record as read (its ModifyIndex): a record rewritten while its
    grace runs (a host's reconciler recording a container, a replay) starts a new grace."""
    grace = 5.0
    bridge = ipam_bridge(make_bridge, keys, "ipam-rewrite", grace).start()
    bridge.wait_active()
    key = keys.key("tasks", "172.30.0.160")
    keys.put(key, record("tasks", "172.30.0.160", GONE_TASK))
    h.wait_until(lambda: key in ipam_health(bridge)["missing"], 5, message="seen missing")
    seen = time.monotonic()  # the bridge's clock for it started at or before this

    time.sleep(3.0)  # inside the grace
    old_index = keys.index(key)
    rewritten = time.monotonic()
    new_index = keys.put(key, record("tasks", "172.30.0.160", GONE_TASK, updated=now_text()))
    assert new_index != old_index

    # The old deadline (at most seen + grace, acted on by the next resync: 1 s) is past here;
    # the new one (at least rewritten + grace) is not.
    time.sleep(max(0.0, seen + grace + 2.0 - time.monotonic()))
    assert time.monotonic() < rewritten + grace
    assert keys.index(key) == new_index, "freed at the deadline of the record before it changed"
    assert wait_gone(keys, key, grace + 6, rewritten) >= grace
    # The bridge counts a free once Consul has answered the delete: the key can be gone a moment
    # before the counter moves.
    h.wait_until(lambda: bridge.health()["counters"]["ipam_frees"] >= 1, 5, message="counted")
    assert bridge.health()["counters"]["ipam_frees"] == 1


def test_a_record_changed_since_it_was_read_or_a_lost_lock_frees_nothing(consul_agent, keys):
    """The fenced free itself, with the bridge's own token: a stale ModifyIndex or a record
    already released is a conflict (False, nothing deleted); a session that does not hold the
    lock is refused whatever the index."""
    store = ConsulStore(consul_agent.url, consul_agent.bridge_token, timeout=5)
    lock = f"saltyard/bridge/ipam-fence-{uuid.uuid4().hex[:8]}"
    holder = store.create_session("ipam fence holder", 10, 0)
    other = store.create_session("ipam fence other", 10, 0)
    try:
        assert store.acquire(lock, holder, "{}")
        key = keys.key("tasks", "172.30.0.170")
        index = keys.put(key, record("tasks", "172.30.0.170", GONE_TASK))
        with pytest.raises(LockLost):
            store.delete_fenced(key, index, lock, other)
        assert keys.index(key) == index
        new_index = keys.put(key, record("tasks", "172.30.0.170", GONE_TASK, updated="now"))
        assert new_index != index
        assert store.delete_fenced(key, index, lock, holder) is False  # changed since
        assert keys.index(key) == new_index
        assert store.delete_fenced(key, new_index, lock, holder) is True
        assert keys.index(key) is None
        assert store.delete_fenced(key, new_index, lock, holder) is False  # already gone
    finally:
        store.release(lock, holder)
        store.destroy_session(holder)
        store.destroy_session(other)


# ---------------------------------------------------------------------- the ACL rule


def test_a_token_without_the_ipam_rule_keeps_the_catalog_and_counts_the_error(
    make_bridge, keys, consul_agent, live_app, h
):
    """Consul answers a recursive read with only what the token may read, so a token without
    the rule would see no allocations at all; the bridge's access check makes that an error
    instead. The catalog side goes on as before."""
    from tests.support.bridge import POLICY_FILE

    rules = POLICY_FILE.read_text()
    rule = re.search(r'^key_prefix "saltyard/ipam/" \{[^}]*\}\n', rules, re.M)
    assert rule, "the policy has no IPAM rule"
    without = rules.replace(rule[0], "")
    assert "saltyard/ipam/" not in "".join(
        line for line in without.splitlines() if not line.startswith("#")
    )
    secret = str(uuid.uuid4())
    consul_agent.create_token(secret, without, f"bridge-noipam-{secret[:8]}")
    app_id, task_id = live_app
    key = keys.key("tasks", "172.30.0.180")
    index = keys.put(key, record("tasks", "172.30.0.180", GONE_TASK))
    bridge = ipam_bridge(make_bridge, keys, "ipam-denied", 1.0, token=secret).start()
    bridge.wait_active()

    h.wait_until(
        lambda: task_id in consul_agent.instances(app_id),
        20,
        message="the live task registered by the bridge without the IPAM rule",
    )
    h.wait_until(
        lambda: bridge.health()["counters"]["errors"].get("ipam", 0) >= 2,
        10,
        message="IPAM errors counted",
    )
    health = bridge.health()
    assert health["status"] == "active" and health["consul"]["ok"] is True
    assert "consul" not in health["counters"]["errors"], health["counters"]["errors"]
    assert "ermission denied" in health["ipam"]["last_error"], health["ipam"]
    assert health["ipam"]["last_run"] is None
    assert bridge.metrics()['saltyard_bridge_errors_total{source="ipam"}'] >= 2
    assert keys.index(key) == index  # nothing freed, nothing else done
    assert "IPAM reconciliation skipped (nothing freed)" in bridge.log()


# ---------------------------------------------------------------------- settings and matching


def parse(*argv: str):
    return parse_settings(build_parser().parse_args(["--marathon", "http://m", *argv]), {})


def test_ipam_settings_default_off_and_bad_graces_are_refused_naming_the_value(capsys):
    default = parse()
    assert default.ipam_reconcile is False
    assert (default.ipam_prefix, default.ipam_grace) == ("saltyard/ipam/", 300)
    on = parse("--ipam-reconcile", "--ipam-grace", "20", "--ipam-prefix", "/x/ipam")
    assert (on.ipam_reconcile, on.ipam_grace, on.ipam_prefix) == (True, 20, "x/ipam/")
    assert parse("--ipam-reconcile", "--no-ipam-reconcile").ipam_reconcile is False
    for bad in ("0", "-3", "nan", "inf"):
        with pytest.raises(SettingsError) as refused:
            parse("--ipam-grace", bad)
        assert f"--ipam-grace {float(bad):g}: must be a number of seconds > 0" in str(refused.value)
    with pytest.raises(SettingsError, match="--ipam-prefix '/': must not be empty"):
        parse("--ipam-prefix", "/")

    from saltyard.bridge.__main__ import main

    for bad, said in (("-1", "--ipam-grace -1:"), ("soon", "'soon'")):
        with pytest.raises(SystemExit) as exit_info:
            main(["--marathon", "http://m", "--ipam-grace", bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert said in err and "--ipam-grace" in err, err


def test_task_ids_match_exactly_or_by_marathon_instance_id():
    listed = TaskIndex(["shop_web.instance-abc._app.1", "legacy.8f0c-11e9"])
    assert "shop_web.instance-abc._app.1" in listed
    assert "shop_web.instance-abc" in listed  # the instance of a listed task
    assert "legacy.8f0c-11e9" in listed
    assert "legacy.8f0c-11e9.1" in listed  # a task of a listed instance id
    assert "shop_web.instance-abd._app.1" not in listed
    assert "shop_web.instance-ab" not in listed
    assert "legacy.8f0c-11e" not in listed
    assert "other.8f0c-11e9" not in listed
