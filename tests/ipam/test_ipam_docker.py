"""The IPAM plugin behind the host's real Docker engine: a macvlan network whose parent is a Linux
bridge this module creates (never the machine's own interface), with ``--ipam-driver`` the
plugin, whose socket is under /run/docker/plugins/ with a name unique to this run. Containers
started on it get their addresses from the plugin, recorded in Consul; reconciliation runs every
second with a grace period of GRACE seconds.

Everything made here (containers, the network, the bridge, the socket) is removed at the end,
also when a test fails."""

from __future__ import annotations

import ipaddress
import random
import time
import uuid
from types import SimpleNamespace

import docker
import docker.types
import pytest

from saltyard.ipam import Allocation, AllocationStore, parse_pool
from tests.support.components import require_root
from tests.support.ipam import PLUGIN_DIR, IpamProcess, LinuxBridge
from tests.support.wait import wait_until

GRACE = 6.0
INTERVAL = 1.0
LABEL = "saltyard.ipam-test"


def free_subnet(engine: docker.DockerClient) -> ipaddress.IPv4Network:
    """A /24 of 198.19.0.0/16 (benchmarking space) that no Docker network of this engine uses."""
    used = []
    for network in engine.api.networks():
        for cfg in (network.get("IPAM") or {}).get("Config") or []:
            try:
                used.append(ipaddress.ip_network(cfg.get("Subnet") or "", strict=False))
            except ValueError:
                continue
    for third in random.sample(range(256), 256):
        candidate = ipaddress.ip_network(f"198.19.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return candidate
    raise RuntimeError("no free /24 in 198.19.0.0/16 for the macvlan test network")


@pytest.fixture(scope="module")
def macvlan(docker_client, task_image, ipam_consul, tmp_path_factory):
    """The bridge, the plugin and the macvlan network; ``run()`` starts a container on it."""
    require_root("creates a Linux bridge and a socket under /run/docker/plugins")
    uid = uuid.uuid4().hex[:6]
    subnet = free_subnet(docker_client)
    hosts = list(subnet.hosts())
    pool_def = {
        "name": f"dk{uid}",
        "subnet": str(subnet),
        "gateway": str(hosts[0]),
        "range": f"{hosts[9]}-{hosts[39]}",
        "reserved": [str(hosts[19])],
    }
    plugin_name = f"saltyard-ipam-test-{uid}"
    config = {
        "host": f"docker-{uid}",
        "plugin": {"name": plugin_name, "socket": str(PLUGIN_DIR / f"{plugin_name}.sock")},
        "reconcile": {"interval": INTERVAL, "grace": GRACE},
        "pools": [pool_def],
    }
    workdir = tmp_path_factory.mktemp("ipam")
    plugin = IpamProcess("docker", workdir, ipam_consul, ipam_consul.ipam_token, config)
    bridge = LinuxBridge(f"ipt{uid}")
    network = None
    started: list[str] = []

    def run(ip: str | None = None, env: dict | None = None):
        api = docker_client.api
        networking = None
        if ip:
            networking = api.create_networking_config(
                {network.name: api.create_endpoint_config(ipv4_address=ip)}
            )
        created = api.create_container(
            task_image,
            ["sleep", "600"],
            name=f"ipam-{uid}-{len(started)}",
            labels={LABEL: uid},
            environment=env,
            host_config=api.create_host_config(network_mode=network.name),
            networking_config=networking,
        )
        started.append(created["Id"])
        api.start(created["Id"])
        container = docker_client.containers.get(created["Id"])
        endpoint = container.attrs["NetworkSettings"]["Networks"][network.name]
        return SimpleNamespace(
            c=container,
            id=container.id,
            name=container.name,
            ip=endpoint["IPAddress"],
            mac=endpoint["MacAddress"].lower(),
        )

    try:
        bridge.create()
        plugin.start()
        network = docker_client.networks.create(
            f"ipam-test-{uid}",
            driver="macvlan",
            options={"parent": bridge.name},
            ipam=docker.types.IPAMConfig(
                driver=plugin_name,
                pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=str(hosts[0]))],
                options={"pool": pool_def["name"]},
            ),
            labels={LABEL: uid},
        )
        yield SimpleNamespace(
            plugin=plugin,
            pool=parse_pool(pool_def),
            network=network,
            bridge=bridge,
            run=run,
            uid=uid,
        )
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": LABEL}):
            if container.labels.get(LABEL) == uid:
                container.remove(force=True)
        if network is not None:
            if not plugin.running():
                plugin.start()  # the engine asks the plugin to release the network's pool
            network.remove()
        plugin.stop()
        print(f"----- ipam plugin log (tail)\n{plugin.log()}")
        bridge.remove()
        plugin.socket.unlink(missing_ok=True)
        assert not bridge.exists()


@pytest.fixture
def store(admin):
    return AllocationStore(admin)


def records(store: AllocationStore, pool: str) -> dict[str, Allocation]:
    return {r.address: r for r in store.list(pool)}


def remove(container) -> None:
    container.c.remove(force=True)


def test_the_network_uses_the_plugin(macvlan):
    ipam = macvlan.network.attrs["IPAM"]
    assert ipam["Driver"] == macvlan.plugin.config["plugin"]["name"]
    assert ipam["Options"] == {"pool": macvlan.pool.name}
    assert ipam["Config"][0]["Gateway"] == str(macvlan.pool.gateway)


def test_containers_get_distinct_addresses_from_the_pool_recorded_in_consul(macvlan, store):
    pool, host = macvlan.pool, macvlan.plugin.config["host"]
    tasks = [f"app_{macvlan.uid}.{uuid.uuid4()}" for _ in range(2)]
    containers = [macvlan.run(env={"MESOS_TASK_ID": t}) for t in tasks] + [macvlan.run()]
    addresses = [c.ip for c in containers]
    assert len(set(addresses)) == 3
    for address in addresses:
        assert pool.hands_out(ipaddress.IPv4Address(address)), address
    found = records(store, pool.name)
    for c in containers:
        assert (found[c.ip].host, found[c.ip].mac) == (host, c.mac)

    def recorded():
        now = records(store, pool.name)
        return all(now[c.ip].container == c.id for c in containers) and now

    now = wait_until(recorded, 10, message="reconciliation recording the containers")
    for c, task in zip(containers, [*tasks, None], strict=True):
        record = now[c.ip]
        assert (record.container_name, record.task_id) == (c.name, task)
        assert record.network == macvlan.network.name and record.endpoint
    for c in containers:
        remove(c)
    assert not set(addresses) & set(records(store, pool.name))


def test_a_removed_container_frees_its_address(macvlan, store):
    pool = macvlan.pool.name
    first = macvlan.run()
    assert first.ip in records(store, pool)
    remove(first)
    wait_until(lambda: first.ip not in records(store, pool), 10, message="the release")
    # Free again: a container asking for exactly that address gets it.
    second = macvlan.run(ip=first.ip)
    assert second.ip == first.ip
    assert records(store, pool)[first.ip].mac == second.mac
    remove(second)
    wait_until(lambda: first.ip not in records(store, pool), 10, message="the release")


def _free_address(macvlan, store) -> str:
    taken = set(records(store, macvlan.pool.name))
    return next(str(a) for a in macvlan.pool.addresses() if str(a) not in taken)


def _not_before_then_gone(store, pool: str, address: str, since: float) -> float:
    """Check ``address`` stays allocated until GRACE after ``since`` (less a margin for the
    poll), then wait until it is gone; the seconds it took."""
    while time.monotonic() - since < GRACE - 1.0:
        assert address in records(store, pool), "freed before the grace period ended"
        time.sleep(0.25)
    wait_until(
        lambda: address not in records(store, pool),
        GRACE + 4 * INTERVAL + 5,
        message=f"reconciliation freeing {address}",
    )
    return time.monotonic() - since


def test_reconciliation_frees_an_orphan_after_the_grace_period_and_not_before(macvlan, store):
    pool, plugin = macvlan.pool, macvlan.plugin
    held = macvlan.run()
    frees = plugin.status()["counters"]["reconcile_frees"]
    orphan = _free_address(macvlan, store)
    # As if a container had gone with its engine: an allocation of this host, no container.
    assert store.create(Allocation(pool.name, orphan, plugin.config["host"], time="t"))
    since = time.monotonic()
    foreign = _free_address(macvlan, store)
    assert store.create(Allocation(pool.name, foreign, f"elsewhere-{macvlan.uid}", time="t"))
    took = _not_before_then_gone(store, pool.name, orphan, since)
    assert GRACE - 1.0 <= took
    left = records(store, pool.name)
    # The running container's address stays (held longer than the grace), as does another
    # host's allocation: this host reconciles only its own.
    assert held.ip in left and foreign in left
    assert plugin.status()["counters"]["reconcile_frees"] == frees + 1
    assert f"freed {orphan} of pool {pool.name}: no container has held it" in plugin.log()
    store.delete(records(store, pool.name)[foreign])
    remove(held)


def test_a_container_removed_while_the_plugin_is_dead_is_freed_by_reconciliation(macvlan, store):
    pool, plugin = macvlan.pool, macvlan.plugin
    victim = macvlan.run()
    wait_until(lambda: records(store, pool.name)[victim.ip].container == victim.id, 10)
    plugin.kill()
    # The engine cannot send its ReleaseAddress: it retries the dead plugin for a while (about
    # 15 s here), then removes the container anyway.
    started = time.monotonic()
    remove(victim)
    assert time.monotonic() - started < 60
    assert victim.ip in records(store, pool.name)
    plugin.start()
    since = time.monotonic()
    _not_before_then_gone(store, pool.name, victim.ip, since)
    counters = plugin.status()["counters"]
    assert counters["reconcile_frees"] == 1
    assert counters["releases"] == 0


def test_a_plugin_restart_keeps_allocations_and_new_ones_continue(macvlan, store):
    pool, plugin = macvlan.pool, macvlan.plugin
    first = macvlan.run()
    wait_until(lambda: records(store, pool.name)[first.ip].container == first.id, 10)
    before = records(store, pool.name)[first.ip]
    assert plugin.stop() == 0
    plugin.start()
    second = macvlan.run()
    assert second.ip != first.ip
    # Several reconciliation passes later, the running container's allocation is unchanged.
    time.sleep(3 * INTERVAL)
    after = records(store, pool.name)
    assert after[first.ip].modify_index == before.modify_index
    assert after[second.ip].host == plugin.config["host"]
    assert plugin.status()["counters"]["reconcile_runs"] >= 2
    remove(first)
    remove(second)
    wait_until(lambda: not {first.ip, second.ip} & set(records(store, pool.name)), 10)


def test_reconciliation_restores_what_a_container_holds_and_names_a_conflict(macvlan, store):
    pool, plugin = macvlan.pool, macvlan.plugin
    held = macvlan.run(env={"MESOS_TASK_ID": f"restore.{macvlan.uid}"})
    wait_until(lambda: records(store, pool.name)[held.ip].container == held.id, 10)
    restores = plugin.status()["counters"]["reconcile_restores"]
    # Consul lost the allocation: it comes back, for this host, with its container.
    assert store.delete(records(store, pool.name)[held.ip])
    back = wait_until(
        lambda: records(store, pool.name).get(held.ip), 10, message="the restored allocation"
    )
    assert (back.host, back.container, back.task_id) == (
        plugin.config["host"],
        held.id,
        f"restore.{macvlan.uid}",
    )
    assert plugin.status()["counters"]["reconcile_restores"] == restores + 1
    # Another host holds it in Consul (changed with check-and-set, so no pass restores it in
    # between): a conflict, counted and logged, and left alone.
    assert store.update(back, host=f"other-{macvlan.uid}") is not None
    wait_until(
        lambda: plugin.status()["counters"]["reconcile_conflicts"] >= 1, 10, message="conflict"
    )
    assert f"holds {held.ip} of pool {pool.name}, which is allocated to host other-" in (
        plugin.log()
    )
    assert records(store, pool.name)[held.ip].host == f"other-{macvlan.uid}"
    store.delete(records(store, pool.name)[held.ip])
    remove(held)
