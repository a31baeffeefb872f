"""Unknown keys under a component's pillar are refused at render time, named with the keys its
defaults.yaml knows (states/lib/params.jinja, _modules/saltyard_params.py); open maps (sysctl,
users, flags, ...) stay open; and the shipped site pillars use no unknown key."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.state_render import RenderRefused, StateRenderer

REPO = Path(__file__).resolve().parents[2]
STATES = REPO / "states"
SITES = sorted((REPO / "pillar" / "sites").glob("*.sls"))

SECRETS = {
    "pki": {
        "ca": "CA",
        "docker_clients_ca": "CLIENTS-CA",
        "docker_client": {"cert": "C", "key": "K"},
        "node": {"cert": "C", "key": "K"},
    },
    "consul": {
        "encrypt": "not-a-key",
        "acl": {
            "master_token": "m",
            "tokens": {
                "agent": "a",
                "lb": "b",
                "discovery": "d",
                "release": "r",
                "ipam": "i",
                "ipam_read": "j",
            },
        },
    },
    "marathon": {"http_credentials": {"password": "not-a-password"}},
    "registry": {"http_secret": "s", "users": {"pull": "p", "push": "q"}},
}


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    made: dict[str, StateRenderer] = {}

    def show(node: str, sls: str, pillar: dict | None = None) -> dict:
        if node not in made:
            made[node] = StateRenderer(
                tmp_path_factory.mktemp(f"render-{node}"), node, pillar=SECRETS
            )
        return made[node].show_sls(sls, pillar=pillar)

    return show


MISSPELT = [
    # node, sls, pillar, the bad key, a known key listed beside it
    (
        "agent-fat",
        "docker",
        {"docker": {"storage_drvier": "aufs"}},
        "docker:storage_drvier",
        "storage_driver",
    ),
    ("agent-fat", "consul", {"consul": {"datacenter": "dc2"}}, "consul:datacenter", "encrypt"),
    (
        "agent-fat",
        "base.time",
        {"base": {"time": {"server": ["x"]}}},
        "base:time:server",
        "servers",
    ),
    (
        "agent-fat",
        "mesos.agent",
        {"mesos": {"agent": {"flagz": {}}}},
        "mesos:agent:flagz",
        "attributes",
    ),
    (
        "registry1",
        "registry",
        {"registry": {"vip": {"adress": "172.30.0.201"}}},
        "registry:vip:adress",
        "address",
    ),
    (
        "lb1",
        "lb",
        {"lb": {"nginx": {"next_upstream_trys": 3}}},
        "lb:nginx:next_upstream_trys",
        "next_upstream_tries",
    ),
    ("control1", "zookeeper", {"zookeeper": {"heapmb": 512}}, "zookeeper:heapmb", "heap_mb"),
    ("agent-fat", "discovery", {"discovery": {"resync": 5}}, "discovery:resync", "resync_interval"),
    (
        "control1",
        "marathon",
        {"marathon": {"emulator": {"enable": True}}},
        "marathon:emulator:enable",
        "enabled",
    ),
]


@pytest.mark.parametrize("node, sls, pillar, bad, known", MISSPELT, ids=[m[3] for m in MISSPELT])
def test_a_misspelt_key_is_refused_naming_it_and_the_known_ones(
    render, node, sls, pillar, bad, known
):
    with pytest.raises(RenderRefused) as refused:
        render(node, sls, pillar)
    message = str(refused.value)
    assert f"pillar {bad} is not a known key" in message, message
    level = bad.rsplit(":", 1)[0]
    listed = re.search(rf"known under {re.escape(level)}: ([^)]*)\)", message)
    assert listed and known in listed.group(1).split(", "), message


@pytest.mark.parametrize(
    "node, sls, pillar",
    [
        ("agent-fat", "base.sysctl", {"base": {"sysctl": {"net.core.netdev_max_backlog": 5000}}}),
        ("agent-fat", "base.limits", {"base": {"limits": {"memlock": "unlimited"}}}),
        ("agent-fat", "docker", {"docker": {"log_opts": {"mode": "non-blocking"}}}),
        ("agent-fat", "mesos.agent", {"mesos": {"agent": {"attributes": {"rack": "r1"}}}}),
        ("agent-fat", "mesos.agent", {"mesos": {"agent": {"flags": {"hostname_lookup": "false"}}}}),
        ("registry1", "registry", {"registry": {"users": {"audit": "pw"}}}),
        ("control1", "marathon", {"marathon": {"settings": {"TASK_LAUNCH_TIMEOUT": 600000}}}),
    ],
)
def test_open_maps_stay_open(render, node, sls, pillar):
    assert render(node, sls, pillar)


def _declared_open_maps() -> dict[str, list[str]]:
    """The open maps each map.jinja declares, read from its refuse_unknown_keys call."""
    declared = {}
    for path in sorted(STATES.glob("*/map.jinja")):
        call = re.search(r"refuse_unknown_keys\('(\w+)', defaults\.\w+(.*?)\)", path.read_text())
        if call:
            rest = re.search(r"open_maps=(\[.*?\])", call.group(2))
            declared[call.group(1)] = ast.literal_eval(rest.group(1)) if rest else []
    return declared


def test_every_component_with_defaults_checks_its_keys():
    declared = _declared_open_maps()
    with_defaults = {p.parent.name for p in STATES.glob("*/defaults.yaml")}
    assert with_defaults <= set(declared), with_defaults - set(declared)


@pytest.mark.parametrize("site", SITES, ids=[s.stem for s in SITES])
def test_every_site_pillar_uses_known_keys_only(load, site):
    params = load("_modules", "saltyard_params")
    declared = _declared_open_maps()
    pillar = yaml.safe_load(site.read_text())
    problems = []
    for component, given in pillar.items():
        assert (STATES / component).is_dir(), f"{site.name}: {component} is no component"
        defaults = yaml.safe_load((STATES / component / "defaults.yaml").read_text())[component]
        problem = params.unknown_keys(component, defaults, given, declared[component])
        if problem:
            problems.append(problem)
    assert problems == [], problems


def test_the_local_site_renders_on_every_kind_of_node(render):
    # Each component's map.jinja with the local site's pillar as it is (and the secrets).
    for node, sls in [
        ("agent-fat", "docker"),
        ("agent-fat", "mesos.agent"),
        ("agent-fat", "base"),
        ("registry1", "registry"),
        ("lb1", "lb"),
        ("control1", "zookeeper"),
        ("agent-fat", "discovery"),  # control1 also renders consul.acl, outside states/
        ("control1", "marathon"),
    ]:
        assert render(node, sls), (node, sls)


def test_unknown_keys_names_every_one(load):
    params = load("_modules", "saltyard_params")
    defaults = {"a": 1, "m": {"x": 1, "y": 2}, "free": {}}
    given = {"b": 1, "m": {"z": 3}, "free": {"anything": 1}}
    assert params.unknown_keys("c", defaults, given, ["free"]) == (
        "pillar c:b is not a known key (known under c: a, free, m); "
        "pillar c:m:z is not a known key (known under c:m: x, y)"
    )
    assert params.unknown_keys("c", defaults, {"m": {"x": 5}}) is None
    assert params.unknown_keys("c", defaults, None) is None
    assert "must be a mapping, got 'oops'" in params.unknown_keys("c", defaults, "oops")
