"""saltyard.ipam.pools without I/O: what a pool hands out, and the refusal of a bad pool with a
message naming the bad value."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from saltyard.ipam.pools import PoolError, parse_address, parse_pool, parse_pools, pool_overlapping


def pool(**changes):
    raw = {"name": "tasks", "subnet": "10.20.0.0/24", "gateway": "10.20.0.1"}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_the_whole_subnet_less_network_broadcast_and_gateway():
    p = parse_pool(pool())
    handed = list(p.addresses())
    assert handed[0] == IPv4Address("10.20.0.2")
    assert handed[-1] == IPv4Address("10.20.0.254")
    assert p.size == len(handed) == 253
    for never in ("10.20.0.0", "10.20.0.1", "10.20.0.255"):
        assert IPv4Address(never) not in handed
        assert not p.hands_out(IPv4Address(never))
    assert p.range_text == "10.20.0.0/24"


def test_a_range_and_reserved_addresses_are_honoured():
    p = parse_pool(
        pool(range="10.20.0.10-10.20.0.20", reserved=["10.20.0.12", "10.20.0.15-10.20.0.16"])
    )
    assert [str(a) for a in p.addresses()] == [
        "10.20.0.10",
        "10.20.0.11",
        "10.20.0.13",
        "10.20.0.14",
        "10.20.0.17",
        "10.20.0.18",
        "10.20.0.19",
        "10.20.0.20",
    ]
    assert p.size == 8
    assert p.refusal(IPv4Address("10.20.0.12")) == (
        "10.20.0.12 is a reserved address of pool 'tasks', never handed out"
    )
    assert "outside the range 10.20.0.10-10.20.0.20 of pool 'tasks'" in p.refusal(
        IPv4Address("10.20.0.30")
    )
    assert "outside the subnet 10.20.0.0/24 of pool 'tasks'" in p.refusal(IPv4Address("10.9.0.1"))
    assert "the gateway of pool 'tasks'" in parse_pool(pool(range="10.20.0.0/28")).refusal(
        IPv4Address("10.20.0.1")
    )


def test_a_cidr_range_inside_the_subnet():
    p = parse_pool(pool(range="10.20.0.128/26"))
    assert (str(p.first), str(p.last)) == ("10.20.0.128", "10.20.0.191")
    assert p.range_text == "10.20.0.128/26"
    assert p.size == 64
    assert p.as_dict() == {
        "name": "tasks",
        "subnet": "10.20.0.0/24",
        "gateway": "10.20.0.1",
        "range": "10.20.0.128/26",
        "reserved": [],
        "size": 64,
    }


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"gateway": "10.21.0.1"}, "gateway 10.21.0.1 is outside its subnet 10.20.0.0/24"),
        ({"gateway": "10.20.0.0"}, "gateway 10.20.0.0 is the network or broadcast address"),
        ({"gateway": "10.20.0.300"}, "gateway '10.20.0.300' is not an IPv4 address"),
        ({"gateway": None}, "pool 'tasks': a gateway is required"),
        ({"range": "10.21.0.0/26"}, "range '10.21.0.0/26' is outside its subnet 10.20.0.0/24"),
        ({"range": "10.20.0.200-10.20.1.10"}, "range '10.20.0.200-10.20.1.10' is outside"),
        ({"range": "10.20.0.20-10.20.0.10"}, "range '10.20.0.20-10.20.0.10' ends before it starts"),
        ({"range": "10.20.0.5/26"}, "range '10.20.0.5/26' is not an IPv4 CIDR"),
        ({"reserved": ["10.30.0.7"]}, "reserved address '10.30.0.7' is outside its subnet"),
        ({"reserved": ["ten"]}, "reserved address 'ten' is not an IPv4 address"),
        ({"reserved": "10.20.0.7"}, "reserved '10.20.0.7': expected a list"),
        ({"subnet": "10.20.0.5/24"}, "subnet '10.20.0.5/24' is not an IPv4 CIDR"),
        ({"subnet": "10.20.0.0/31"}, "subnet 10.20.0.0/31: the prefix length must be /16 to /30"),
        ({"subnet": "10.0.0.0/8"}, "subnet 10.0.0.0/8: the prefix length must be /16 to /30"),
        ({"subnet": "fd00::/64"}, "subnet 'fd00::/64' is not an IPv4 CIDR"),
        ({"name": "Tasks"}, "pool name 'Tasks': expected a DNS label"),
        ({"name": "a/b"}, "pool name 'a/b'"),
        ({"ranges": "10.20.0.0/26"}, "pool 'tasks': unknown key(s) 'ranges'"),
        (
            {"range": "10.20.0.1-10.20.0.2", "reserved": ["10.20.0.2"]},
            "range 10.20.0.1-10.20.0.2 has no address to hand out",
        ),
    ],
)
def test_a_bad_pool_is_refused_naming_the_value(changes, named):
    with pytest.raises(PoolError) as err:
        parse_pool(pool(**changes))
    assert named in str(err.value)


def test_the_subnet_hint_names_the_network_meant():
    with pytest.raises(PoolError, match=r"did you mean 10\.20\.0\.0/24"):
        parse_pool(pool(subnet="10.20.0.5/24"))


def test_overlapping_pools_and_a_name_twice_are_refused():
    a = pool()
    with pytest.raises(PoolError, match=r"pool 'b' subnet 10\.20\.0\.128/25 overlaps pool 'tasks'"):
        parse_pools([a, pool(name="b", subnet="10.20.0.128/25", gateway="10.20.0.129")])
    with pytest.raises(PoolError, match="pool 'tasks' is defined twice"):
        parse_pools([a, pool(subnet="10.21.0.0/24", gateway="10.21.0.1")])
    with pytest.raises(PoolError, match="expected a non-empty list of pools"):
        parse_pools([])
    two = parse_pools([a, pool(name="b", subnet="10.21.0.0/24", gateway="10.21.0.1")])
    assert [p.name for p in two] == ["tasks", "b"]


def test_pool_overlapping_names_the_pool_that_would_hand_an_address_out():
    pools = parse_pools([pool(range="10.20.0.128/26", reserved=["10.20.0.130"])])
    assert pool_overlapping(pools, "10.20.0.129").name == "tasks"
    assert pool_overlapping(pools, "10.20.0.0/25") is None  # below the range
    assert pool_overlapping(pools, "10.20.0.130") is None  # reserved: clear of it
    assert pool_overlapping(pools, "10.20.0.1") is None  # the gateway, never handed out
    assert pool_overlapping(pools, "10.20.0.160/27").name == "tasks"


def test_docker_addresses_with_or_without_a_prefix():
    assert parse_address("10.20.0.5/24") == IPv4Address("10.20.0.5")
    assert parse_address("10.20.0.5") == IPv4Address("10.20.0.5")
    assert parse_address("") is None
    with pytest.raises(PoolError, match="address 'nope' is not an IPv4 address"):
        parse_address("nope")
