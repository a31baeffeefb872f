"""What docs/bridge.md promises about the catalog while things change, each against real Consul,
the emulator and bridge processes:

- a write larger than one Consul transaction never shows a load balancer fewer instances of an
  app than before and after it;
- a leader that stalls (SIGSTOP) until another bridge took over writes nothing when it resumes,
  not even the write it had in flight;
- a Marathon restart (health results forgotten) takes no healthy instance out of Consul, and an
  instance whose health stays unknown leaves after --unknown-health-grace.
"""

from __future__ import annotations

import threading
import time

import requests

# The session's task image (tagged by the emulator fixture); a name of its own here once
# pointed at an image that only machines of older sessions still had.
from tests.support.docker import TASK_IMAGE


def service_ids(consul_agent, service: str) -> set[str]:
    """The instances of ``service`` a load balancer would read (the catalog)."""
    _, entries = consul_agent.admin().catalog.service(service)
    return {e["ServiceID"] for e in entries or []}


# ---------------------------------------------------------------------- chunked writes


def test_a_write_larger_than_one_transaction_never_shows_fewer_instances(
    make_bridge, apps, marathon, consul_agent, consul_proxy, h
):
    """70 instances that Marathon no longer runs are in Consul (registered for the app's former
    tasks while no bridge ran) and 70 new ones run: the bridge's first resync replaces all of
    them, 140 operations, three transactions. After each one commits, the catalog holds at
    least 70 (with deregistrations first, the first chunk left 7)."""
    count = 70
    app = apps(
        {
            "id": "/big/web",
            "cmd": "exec sleep 3600",  # cheap: no health checks, nothing to serve
            "instances": count,
            "cpus": 0.01,
            "mem": 16,
            "container": {"type": "DOCKER", "docker": {"image": TASK_IMAGE, "network": "HOST"}},
            "portDefinitions": [{"port": 0}],
            "labels": {
                "saltyard.register-without-health-checks": "true",
                "saltyard.env": "fat",
            },
        }
    )
    h.wait_until(
        lambda: sum(t["state"] == "TASK_RUNNING" for t in marathon.list_tasks(app["id"])) == count,
        300,  # 70 container starts on a busy shared 2-core host
        interval=1,
        message=f"{count} tasks running",
    )
    # The instances of the app's former tasks, as the bridge registered them (owned).
    stale = {f"big_web.old-{i:03d}" for i in range(count)}
    admin_ops = [
        {
            "Node": {
                "Verb": "set",
                "Node": {
                    "Node": "marathon-agent-fat",
                    "Address": "127.0.0.1",
                    "Meta": {
                        "external-node": "true",
                        "saltyard-bridge": "owned",
                        "marathon-host": "agent-fat",
                    },
                },
            }
        }
    ]
    for sid in sorted(stale):
        admin_ops.append(
            {
                "Service": {
                    "Verb": "set",
                    "Node": "marathon-agent-fat",
                    "Service": {
                        "ID": sid,
                        "Service": "big-web",
                        "Address": "127.0.0.1",
                        "Port": 1,
                        "Meta": {"saltyard-bridge": "owned", "marathon-app": app["id"]},
                    },
                }
            }
        )
    for start in range(0, len(admin_ops), 60):
        # Not py-consul's txn.put: it sends no ACL token.
        answer = requests.put(
            f"{consul_agent.url}/v1/txn",
            json=admin_ops[start : start + 60],
            headers={"X-Consul-Token": consul_agent.master},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    assert service_ids(consul_agent, "big-web") == stale

    seen: list[int] = []
    consul_proxy.after_txn = lambda ops, status: seen.append(
        len(service_ids(consul_agent, "big-web"))
    )
    bridge = make_bridge("big", "saltyard/bridge/big", consul_url=consul_proxy.url).start()
    bridge.wait_active(30)
    running = {t["id"] for t in marathon.list_tasks(app["id"])}
    h.wait_until(
        lambda: service_ids(consul_agent, "big-web") == running,
        30,
        message="Consul holding exactly the running tasks",
    )
    writes = [(ops, status) for _, ops, status in consul_proxy.txns]
    assert len(writes) >= 3, h.dump([len(o) for o, _ in writes])  # one write, split
    assert all(status == 200 for _, status in writes)
    assert all(len(ops) <= 64 for ops, _ in writes)
    assert seen and seen[-1] == count, seen
    assert min(seen) >= count, f"instances after each transaction: {seen}"


# ---------------------------------------------------------------------- fencing


def test_a_stalled_leader_writes_nothing_after_another_took_over(
    make_bridge, apps, marathon, consul_agent, consul_proxy, h
):
    """Bridge A (through the proxy) is active; B waits. A scales-up registration is in flight
    when A freezes (SIGSTOP). A's session expires, B takes over, and the new task is scaled
    away again, which B writes. Then A's stale write reaches Consul and A resumes: Consul
    refuses the write (A's session no longer holds the lock), so the dead task does not come
    back, and A writes nothing more."""
    first = make_bridge("stale", "saltyard/bridge/fence", consul_url=consul_proxy.url).start()
    first.wait_active()
    second = make_bridge("next", "saltyard/bridge/fence").start()
    app = apps(h.web_app("/fence/web"))
    (kept,) = h.wait_until(
        lambda: h.owned_view(consul_agent, app["id"]), 40, message="one instance registered"
    )
    assert second.health()["active"] is False

    consul_proxy.hold()
    marathon.scale_app(app["id"], 2, force=True)
    h.wait_until(lambda: consul_proxy.held, 40, message="A's registration of the new task")
    (added,) = set(h.healthy_tasks(marathon, app["id"])) - {kept}
    first.pause()
    try:
        paused_at = time.monotonic()
        second.wait_active(30)  # A's session expired (1-2 TTLs), then the lock-delay
        marathon.kill_task(app["id"], added, scale=True, force=True)
        h.wait_until(
            lambda: set(h.owned_view(consul_agent, app["id"])) == {kept},
            30,
            message="B holding only the task left",
        )
        before = consul_agent.admin().catalog.service("fence-web")[1]
        consul_proxy.release()  # A's stale write goes to Consul now
        h.wait_until(lambda: consul_proxy.txns, 10, message="A's held write forwarded")
    finally:
        first.resume()
    h.wait_until(lambda: first.health()["active"] is False, 15, message="A noticing it is passive")
    resynced = second.metrics()["saltyard_bridge_resyncs_total"]
    h.wait_until(
        lambda: second.metrics()["saltyard_bridge_resyncs_total"] >= resynced + 2,
        15,
        message="two more resyncs of B",
    )
    late = [(t, ops, status) for t, ops, status in consul_proxy.txns if t > paused_at]
    assert late, "A's held write never reached Consul"
    # Every write of A's from its stall on was refused by Consul, the held one first.
    assert all(status == 409 for _, _, status in late), h.dump(late)
    assert any(op.get("Service", {}).get("Service", {}).get("ID") == added for op in late[0][1]), (
        h.dump(late[0][1])
    )
    assert set(h.owned_view(consul_agent, app["id"])) == {kept}
    after = consul_agent.admin().catalog.service("fence-web")[1]
    assert [(e["ServiceID"], e["ModifyIndex"]) for e in after] == [
        (e["ServiceID"], e["ModifyIndex"]) for e in before
    ]
    assert "now PASSIVE" in first.log()
    assert second.health()["active"] is True


# ---------------------------------------------------------------------- Marathon restart


def test_a_marathon_restart_takes_no_healthy_instance_out(
    make_bridge, apps, emulator, marathon, consul_agent, h
):
    """After the emulator restarts it knows no health result until each task's next check
    (as Marathon after a restart or leader change). The three instances of an app checked every
    2 s never leave Consul meanwhile; the instance of an app checked every 30 s, whose health
    stays unknown that long, leaves once the bridge's --unknown-health-grace (10 s here) has
    passed."""
    grace = 10.0
    bridge = make_bridge(
        "unknown", "saltyard/bridge/unknown", "--unknown-health-grace", f"{grace:g}"
    ).start()
    bridge.wait_active()
    checked = h.web_app("/mrestart/web", 3)
    checked["healthChecks"][0]["intervalSeconds"] = 2
    web = apps(checked)
    rarely = h.web_app("/mrestart/slow")
    # Its first check may come before the server listens (ignored in the grace period); the
    # next is 30 s later, so it takes that long to be registered in the first place.
    rarely["healthChecks"][0]["intervalSeconds"] = 30
    slow = apps(rarely)
    h.wait_until(
        lambda: len(h.owned_view(consul_agent, web["id"])) == 3
        and len(h.owned_view(consul_agent, slow["id"])) == 1,
        75,
        message="3 + 1 instances registered",
    )
    (slow_task,) = h.owned_view(consul_agent, slow["id"])

    samples: list[tuple[float, int, int]] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                samples.append(
                    (
                        time.monotonic(),
                        len(service_ids(consul_agent, "mrestart-web")),
                        len(service_ids(consul_agent, "mrestart-slow")),
                    )
                )
            except Exception:  # a failed read is no sample
                pass
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        emulator.stop()
        restarted = time.monotonic()
        emulator.start()
        # The restarted emulator knows no health result (otherwise this test proves nothing).
        tasks = h.wait_until(
            lambda: marathon.list_tasks(slow["id"]), 10, message="the slow app's task adopted"
        )
        assert [t["healthCheckResults"] for t in tasks] == [[]], h.dump(tasks)
        h.wait_until(
            lambda: bridge.health()["event_stream_connected"] and bridge.health()["marathon"]["ok"],
            30,
            message="the bridge back on Marathon",
        )
        h.wait_until(
            lambda: len(h.healthy_tasks(marathon, web["id"])) == 3,
            30,
            message="the checked app's health known again",
        )
        h.wait_until(
            lambda: not h.owned_view(consul_agent, slow["id"]),
            grace + 20,
            message="the instance of unknown health deregistered after the grace",
        )
        gone_at = time.monotonic()
        time.sleep(1)
    finally:
        done.set()
        watcher.join(5)
    during = [s for s in samples if s[0] >= restarted]
    assert len(during) > 50, len(during)
    assert min(s[1] for s in during) == 3, [s[1] for s in during]
    # The unknown one stayed through the grace and left after it (the bridge starts counting
    # when it first reads the unknown health, after the restart).
    slow_gone = min(s[0] for s in during if s[2] == 0)
    assert slow_gone - restarted >= grace - 0.5, slow_gone - restarted
    assert gone_at - restarted <= grace + 20
    registered = h.owned_view(consul_agent, web["id"])
    assert registered.keys() == h.healthy_tasks(marathon, web["id"]).keys()
    log = bridge.log()
    assert f"task {slow_task} of {slow['id']}: health still unknown after {grace:g}s" in log
