"""The IPAM plugin's API over its unix socket, as Docker calls it, against a real Consul: two
plugin daemons with different host names (two hosts) share one Consul. Reconciliation is off
here (no Docker engine is involved); test_ipam_docker.py has it."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address

import pytest

from saltyard.clients.consul import ConsulClient
from saltyard.ipam import list_allocations
from saltyard.ipam.unix_http import UnixHTTPConnection
from tests.support.wait import free_port

GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}


def config(sock_dir, name: str, host: str, pools: list[dict], **extra) -> dict:
    return {
        "host": host,
        "plugin": {"name": f"ipam-{name}", "socket": str(sock_dir / f"{name}.sock")},
        "reconcile": {"enabled": False},
        "pools": pools,
        **extra,
    }


def mac(i: int) -> str:
    return f"02:42:0a:00:{i // 256:02x}:{i % 256:02x}"


@pytest.fixture
def two_hosts(make_plugin, sock_dir, unique):
    """Two plugins (hosts a-<id> and b-<id>) over one pool "p<id>" of exactly 50 addresses:
    198.18.7.10-198.18.7.61 less the reserved .20 and .30."""
    name = f"p{unique}"
    pools = [
        {
            "name": name,
            "subnet": "198.18.7.0/24",
            "gateway": "198.18.7.1",
            "range": "198.18.7.10-198.18.7.61",
            "reserved": ["198.18.7.20", "198.18.7.30"],
        },
        # A second pool, so that choosing by option or subnet is really a choice.
        {"name": f"q{unique}", "subnet": "198.18.8.0/24", "gateway": "198.18.8.254"},
    ]
    a = make_plugin("a", config(sock_dir, "a", f"a-{unique}", pools)).start()
    b = make_plugin("b", config(sock_dir, "b", f"b-{unique}", pools)).start()
    return name, a, b


def test_handshake_capabilities_and_address_spaces(two_hosts):
    _, a, _ = two_hosts
    assert a.call("Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})
    assert a.call("IpamDriver.GetCapabilities") == (
        200,
        {"RequiresMACAddress": True, "RequiresRequestReplay": True},
    )
    status, spaces = a.call("IpamDriver.GetDefaultAddressSpaces")
    assert status == 200
    assert set(spaces) == {"LocalDefaultAddressSpace", "GlobalDefaultAddressSpace"}
    status, answer = a.call("IpamDriver.Nonsense")
    assert status == 404 and "no method 'IpamDriver.Nonsense'" in answer["Err"]


def test_request_pool_by_option_or_subnet_the_same_pool_id(two_hosts, unique):
    name, a, b = two_hosts
    by_option = {"AddressSpace": "saltyard-local", "Pool": "", "Options": {"pool": name}}
    by_both = {"Pool": "198.18.7.0/24", "Options": {"pool": name}}
    by_subnet = {"Pool": "198.18.7.0/24", "Options": {}}
    answers = [a.call("IpamDriver.RequestPool", body) for body in (by_option, by_both, by_subnet)]
    answers.append(b.call("IpamDriver.RequestPool", by_option))
    answers.append(a.call("IpamDriver.RequestPool", by_option))
    expected = {
        "PoolID": name,
        "Pool": "198.18.7.0/24",
        "Data": {"com.docker.network.gateway": "198.18.7.1/24"},
    }
    assert answers == [(200, expected)] * 5
    other = a.call("IpamDriver.RequestPool", {"Pool": "198.18.8.0/24"})
    assert other[1]["PoolID"] == f"q{unique}"
    assert a.call("IpamDriver.ReleasePool", {"PoolID": name}) == (200, {})


REFUSED_POOLS = [
    (
        {"Pool": "198.18.9.0/24", "Options": {"pool": "POOL"}},
        "--subnet 198.18.9.0/24 does not match pool 'POOL', whose subnet is 198.18.7.0/24",
    ),
    ({"Pool": "198.18.9.0/24"}, "--subnet 198.18.9.0/24 is not the subnet of a configured pool"),
    (
        {"Options": {"pool": "nosuch"}},
        "--ipam-opt pool=nosuch: no such pool (configured: POOL (198.18.7.0/24)",
    ),
    ({"Pool": ""}, "name a pool with --ipam-opt pool=NAME or --subnet CIDR"),
    ({"Pool": "fd00::/64", "V6": True}, "serves IPv4 pools only"),
    (
        {"Options": {"pool": "POOL"}, "SubPool": "198.18.7.0/28"},
        "--ip-range 198.18.7.0/28: pool 'POOL' hands out its configured range "
        "198.18.7.10-198.18.7.61",
    ),
]


@pytest.mark.parametrize(("body", "named"), REFUSED_POOLS)
def test_request_pool_refusals_name_the_value(two_hosts, body, named):
    name, a, _ = two_hosts
    body = json.loads(json.dumps(body).replace("POOL", name))
    status, answer = a.call("IpamDriver.RequestPool", body)
    assert status == 500
    assert named.replace("POOL", name) in answer["Err"]


def test_the_gateway_is_answered_and_never_allocated(two_hosts, admin, consul_keys):
    name, a, _ = two_hosts
    assert a.request(name, **GATEWAY) == (200, {"Address": "198.18.7.1/24", "Data": {}})
    assert a.request(name, "198.18.7.1", **GATEWAY)[1]["Address"] == "198.18.7.1/24"
    status, answer = a.request(name, "198.18.7.2", **GATEWAY)
    assert status == 500
    assert f"--gateway 198.18.7.2 is not the gateway 198.18.7.1 of pool '{name}'" in answer["Err"]
    # Asked for as an ordinary address, the gateway is refused.
    status, answer = a.request(name, "198.18.7.1", mac=mac(1))
    assert status == 500 and "198.18.7.1 is the gateway of pool" in answer["Err"]
    assert a.release(name, "198.18.7.1") == (200, {})
    assert consul_keys(admin, name) == {}


def _hammer(plugins, pool: str, count: int) -> list[tuple[str, int, dict]]:
    """``count`` RequestAddress calls at once, spread over ``plugins`` in turn, all released by
    one barrier: (plugin name, status, answer) for each."""
    barrier = threading.Barrier(count, timeout=30)

    def one(i: int):
        plugin = plugins[i % len(plugins)]
        barrier.wait()
        status, answer = plugin.request(pool, mac=mac(i))
        return plugin, i, status, answer

    with ThreadPoolExecutor(count) as pool_:
        return list(pool_.map(one, range(count)))


def test_fifty_concurrent_allocations_from_two_hosts_never_hand_out_an_address_twice(
    make_plugin, sock_dir, unique, admin, consul_keys
):
    name = f"big{unique}"
    pools = [{"name": name, "subnet": "198.18.10.0/24", "gateway": "198.18.10.1"}]
    a = make_plugin("a", config(sock_dir, "a", f"a-{unique}", pools)).start()
    b = make_plugin("b", config(sock_dir, "b", f"b-{unique}", pools)).start()
    results = _hammer([a, b], name, 50)
    assert [(s, ans) for _, _, s, ans in results if s != 200] == []
    answered = [ans["Address"].split("/")[0] for _, _, _, ans in results]
    assert len(set(answered)) == 50, sorted(answered)
    records = consul_keys(admin, name)
    assert sorted(records) == sorted(answered)
    for plugin, i, _, ans in results:
        record = records[ans["Address"].split("/")[0]]
        assert record["host"] == plugin.config["host"]
        assert record["mac"] == mac(i)
        assert record["pool"] == name and record["time"]
    counted = a.status()["counters"]["allocations"] + b.status()["counters"]["allocations"]
    assert counted == 50


def test_a_full_pool_refuses_clearly_and_nothing_is_half_allocated(two_hosts, admin, consul_keys):
    name, a, b = two_hosts
    results = _hammer([a, b], name, 60)
    ok = [ans["Address"] for _, _, s, ans in results if s == 200]
    refused = [ans["Err"] for _, _, s, ans in results if s != 200]
    assert len(ok) == 50 and len(set(ok)) == 50
    assert len(refused) == 10
    for text in refused:
        assert f"pool '{name}' is full: all 50 allocatable addresses are allocated" in text
    handed = {IPv4Address(x.split("/")[0]) for x in ok}
    expected = {IPv4Address(int(IPv4Address("198.18.7.10")) + i) for i in range(52)}
    expected -= {IPv4Address("198.18.7.20"), IPv4Address("198.18.7.30")}
    assert handed == expected  # neither the gateway nor a reserved address, all of the range
    assert {IPv4Address(k) for k in consul_keys(admin, name)} == handed
    # Full: one more is refused and leaves Consul as it was.
    status, answer = b.request(name, mac=mac(999))
    assert status == 500 and "is full" in answer["Err"]
    assert len(consul_keys(admin, name)) == 50
    full = a.status()["counters"]["pool_full"].get(name, 0)
    full += b.status()["counters"]["pool_full"].get(name, 0)
    assert full == 11
    # One released: that address, and only it, is handed out again.
    records = consul_keys(admin, name)
    address, record = random.choice(sorted(records.items()))
    owner = a if record["host"] == a.config["host"] else b
    assert owner.release(name, address) == (200, {})
    assert address not in consul_keys(admin, name)
    status, answer = (b if owner is a else a).request(name, mac=mac(1000))
    assert (status, answer["Address"]) == (200, f"{address}/24")


def test_release_frees_and_is_only_the_owners(two_hosts, admin, consul_keys):
    name, a, b = two_hosts
    _, answer = a.request(name, mac=mac(1))
    address = answer["Address"].split("/")[0]
    assert consul_keys(admin, name)[address]["host"] == a.config["host"]
    status, refused = b.release(name, address)
    assert status == 500
    assert f"allocated to host '{a.config['host']}', not to this host" in refused["Err"]
    assert address in consul_keys(admin, name)
    assert a.release(name, address) == (200, {})
    assert consul_keys(admin, name) == {}
    # Twice (or after reconciliation freed it) is not an error.
    assert a.release(name, address) == (200, {})
    counters = a.status()["counters"]
    assert (counters["releases"], counters["releases_unknown"]) == (1, 1)


def test_a_specific_address_replay_on_the_same_host_answers_the_same(two_hosts, admin, consul_keys):
    name, a, b = two_hosts
    assert a.request(name, "198.18.7.44", mac=mac(7)) == (
        200,
        {"Address": "198.18.7.44/24", "Data": {}},
    )
    first = consul_keys(admin, name)["198.18.7.44"]
    # What an engine restarting with RequiresRequestReplay sends: the pool, the gateway it
    # holds, then each endpoint's address with its MAC.
    replayed_pool = {"Pool": "198.18.7.0/24", "Options": {"pool": name}}
    assert a.call("IpamDriver.RequestPool", replayed_pool)[1]["PoolID"] == name
    assert a.request(name, "198.18.7.1", **GATEWAY)[1]["Address"] == "198.18.7.1/24"
    assert a.request(name, "198.18.7.44", mac=mac(7))[1] == {
        "Address": "198.18.7.44/24",
        "Data": {},
    }
    assert a.request(name, "198.18.7.44")[0] == 200  # no MAC: nothing tells it apart
    again = consul_keys(admin, name)["198.18.7.44"]
    assert (again["host"], again["mac"], again["time"]) == (first["host"], mac(7), first["time"])
    assert again["updated"]
    assert a.status()["counters"]["replays"] == 2
    # Another endpoint of this host (another MAC) does not get it.
    status, answer = a.request(name, "198.18.7.44", mac=mac(8))
    assert status == 500
    assert f"allocated on this host to the endpoint with MAC {mac(7)}" in answer["Err"]
    # Another host does not get it.
    status, answer = b.request(name, "198.18.7.44", mac=mac(7))
    assert status == 500
    owner = a.config["host"]
    assert f"198.18.7.44 of pool '{name}' is allocated to host '{owner}'" in answer["Err"]
    assert list(consul_keys(admin, name)) == ["198.18.7.44"]


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("198.18.7.20", "198.18.7.20 is a reserved address of pool"),
        ("198.18.7.9", "198.18.7.9 is outside the range 198.18.7.10-198.18.7.61 of pool 'POOL'"),
        ("198.18.7.255", "198.18.7.255 is the broadcast address of pool 'POOL'"),
        ("198.18.7.62", "198.18.7.62 is outside the range"),
        ("10.1.2.3", "10.1.2.3 is outside the subnet 198.18.7.0/24 of pool 'POOL'"),
        ("banana", "address 'banana' is not an IPv4 address"),
    ],
)
def test_specific_addresses_the_pool_does_not_hand_out_are_refused(
    two_hosts, admin, consul_keys, address, named
):
    name, a, _ = two_hosts
    status, answer = a.request(name, address, mac=mac(1))
    assert status == 500
    assert named.replace("POOL", name) in answer["Err"]
    assert consul_keys(admin, name) == {}
    assert a.status()["counters"]["refusals"] == {"IpamDriver.RequestAddress": 1}


def test_unknown_pool_id_is_refused_by_name(two_hosts):
    _, a, _ = two_hosts
    status, answer = a.request("nosuch", mac=mac(1))
    assert status == 500 and "no pool 'nosuch' (configured: " in answer["Err"]


def test_a_plugin_restart_keeps_allocations_and_new_ones_continue(two_hosts, admin, consul_keys):
    name, a, _ = two_hosts
    before = {a.request(name, mac=mac(i))[1]["Address"] for i in range(5)}
    assert a.stop() == 0
    assert not a.socket.exists()  # a clean stop removes the socket
    a.start()
    assert set(consul_keys(admin, name)) == {x.split("/")[0] for x in before}
    # The replay after the restart answers the same, and new allocations are new addresses.
    for address, record in sorted(consul_keys(admin, name).items()):
        assert a.request(name, address, mac=record["mac"])[1]["Address"] == f"{address}/24"
    after = {a.request(name, mac=mac(100 + i))[1]["Address"] for i in range(5)}
    assert not before & after and len(after) == 5
    # A crash (SIGKILL) leaves the socket behind; the next start takes it over.
    a.kill()
    assert a.socket.exists()
    a.start()
    assert len(consul_keys(admin, name)) == 10
    assert a.request(name, mac=mac(200))[0] == 200
    assert len(consul_keys(admin, name)) == 11


def test_a_second_plugin_on_a_live_socket_is_refused(two_hosts, make_plugin):
    _, a, _ = two_hosts
    twin = make_plugin("twin", a.config)
    twin.start(wait=False)
    assert twin.proc.wait(20) == 2
    assert "another process serves" in twin.log()
    assert a.call("Plugin.Activate")[0] == 200


def test_list_allocations_is_the_record(two_hosts, admin):
    name, a, b = two_hosts
    a.request(name, "198.18.7.15", mac=mac(1))
    b.request(name, "198.18.7.11", mac=mac(2))
    listed = list_allocations(admin, pool=name)
    assert [(x["address"], x["host"], x["mac"]) for x in listed] == [
        ("198.18.7.11", b.config["host"], mac(2)),
        ("198.18.7.15", a.config["host"], mac(1)),
    ]
    assert all(x["modify_index"] > 0 and x["pool"] == name for x in listed)
    everything = list_allocations(admin)
    assert {(x["pool"], x["address"]) for x in everything} >= {
        (name, "198.18.7.11"),
        (name, "198.18.7.15"),
    }


def test_without_the_policy_the_plugin_says_consul_denied_it(make_plugin, sock_dir, unique):
    pools = [{"name": f"d{unique}", "subnet": "198.18.11.0/24", "gateway": "198.18.11.1"}]
    anonymous = make_plugin("anon", config(sock_dir, "anon", f"h-{unique}", pools), token=None)
    anonymous.start()
    status, answer = anonymous.request(f"d{unique}", mac=mac(1))
    assert status == 500
    assert "permission denied" in answer["Err"] and "Consul" in answer["Err"]
    assert anonymous.status()["counters"]["errors"] == {"IpamDriver.RequestAddress": 1}


def test_consul_away_is_a_clear_error_not_a_hang(make_plugin, sock_dir, unique):
    port = free_port()
    pools = [{"name": f"e{unique}", "subnet": "198.18.12.0/24", "gateway": "198.18.12.1"}]
    cfg = config(
        sock_dir,
        "away",
        f"h-{unique}",
        pools,
        consul={"address": f"127.0.0.1:{port}", "timeout": 2},
    )
    plugin = make_plugin("away", cfg).start()
    started = time.monotonic()
    status, answer = plugin.request(f"e{unique}", mac=mac(1))
    assert time.monotonic() - started < 10
    assert status == 500
    assert f"no answer from Consul at http://127.0.0.1:{port}" in answer["Err"]
    # The status endpoint still answers, and says it could not count.
    assert plugin.status()["pools"][0]["allocated"] is None


def test_the_status_endpoint_answers_a_plain_get(two_hosts):
    name, a, _ = two_hosts
    connection = UnixHTTPConnection(a.socket, 5)
    connection.request("GET", "/Saltyard.Status")
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 200
    assert body["host"] == a.config["host"] and body["plugin"] == a.config["plugin"]["name"]
    assert [p["name"] for p in body["pools"]][0] == name
    assert body["pools"][0]["size"] == 50 and body["reconcile"] == {"enabled": False}


def test_list_allocations_through_the_project_client_only(ipam_consul):
    # The listing is what `salt-run ipam.list` will call: with the ipam token alone it reads.
    client = ConsulClient(ipam_consul.url, ipam_consul.ipam_token)
    assert isinstance(list_allocations(client), list)
