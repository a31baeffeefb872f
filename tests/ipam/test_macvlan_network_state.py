"""The ipam role's Salt modules against real components on the host: the ``macvlan_network``
state and execution module with the host's Docker engine, a Linux bridge this module creates as
the macvlan parent (never the machine's own interface) and a real IPAM plugin (a name unique to
this run, Consul 1.8 with the ipam policy's token); the runner ``ipam.list`` and
``saltyard_ipam.status`` over that plugin's allocations.

The state reads the network, returns when it is as configured, predicts in test mode and changes
nothing then, creates it, refuses to re-create a differing network while a container is attached
(naming it, changing nothing) and re-creates it once none is. Everything made here is removed at
the end, also when a test fails."""

from __future__ import annotations

import importlib.util
import ipaddress
import uuid
from types import SimpleNamespace

import pytest

from tests.ipam.test_ipam_docker import LABEL, free_subnet
from tests.support.components import require_root
from tests.support.ipam import PLUGIN_DIR, IpamProcess, LinuxBridge
from tests.support.salt_loader import REPO, load_module
from tests.support.wait import wait_until


def salt_modules(test: bool = False):
    """The execution module and the state, wired as Salt's loader would wire them."""
    module = load_module("_modules", "macvlan_network", test=test)
    salt = {
        f"macvlan_network.{fn}": getattr(module, fn)
        for fn in ("interface_problem", "get", "create", "remove", "wait_for_plugin")
    }
    return module, load_module("_states", "macvlan_network", salt=salt, test=test)


@pytest.fixture(scope="module")
def setup(docker_client, ipam_consul, tmp_path_factory):
    require_root("creates a Linux bridge and a socket under /run/docker/plugins")
    uid = uuid.uuid4().hex[:6]
    subnet = free_subnet(docker_client)
    hosts = list(subnet.hosts())
    pool = {
        "name": f"st{uid}",
        "subnet": str(subnet),
        "gateway": str(hosts[0]),
        # The second /28 of the subnet: a range given as a CIDR becomes the network's ip_range.
        "range": str(list(subnet.subnets(new_prefix=28))[1]),
    }
    plugin_name = f"saltyard-ipam-st-{uid}"
    socket = str(PLUGIN_DIR / f"{plugin_name}.sock")
    config = {
        "host": f"state-{uid}",
        "plugin": {"name": plugin_name, "socket": socket},
        "reconcile": {"interval": 1, "grace": 30},
        "pools": [pool],
    }
    workdir = tmp_path_factory.mktemp("ipam-state")
    plugin = IpamProcess("state", workdir, ipam_consul, ipam_consul.ipam_token, config)
    bridge = LinuxBridge(f"ips{uid}")
    name = f"ipam-state-{uid}"
    try:
        bridge.create()
        plugin.start()
        yield SimpleNamespace(
            uid=uid,
            name=name,
            pool=pool,
            plugin=plugin,
            bridge=bridge,
            args={
                "parent": bridge.name,
                "subnet": pool["subnet"],
                "gateway": pool["gateway"],
                "ip_range": pool["range"],
                "ipam_driver": plugin_name,
                "ipam_options": {"pool": pool["name"]},
                "plugin_socket": socket,
            },
        )
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": LABEL}):
            if container.labels.get(LABEL) == uid:
                container.remove(force=True)
        for network in docker_client.networks.list(names=[name]):
            network.remove()
        plugin.stop()
        print(f"----- ipam plugin log (tail)\n{plugin.log()}")
        bridge.remove()
        plugin.socket.unlink(missing_ok=True)
        assert not bridge.exists()


def test_test_mode_predicts_the_network_and_creates_nothing(setup):
    module, state = salt_modules(test=True)
    ret = state.present(setup.name, **setup.args)
    assert ret["result"] is None, ret
    assert ret["changes"]["old"] is None
    assert ret["changes"]["new"]["options"] == {
        "parent": setup.bridge.name,
        "macvlan_mode": "bridge",
    }
    assert "would be created" in ret["comment"]
    assert module.get(setup.name) is None


def test_the_network_is_created_and_a_second_run_changes_nothing(setup):
    module, state = salt_modules()
    ret = state.present(setup.name, **setup.args)
    assert ret["result"] is True and ret["comment"].endswith("created"), ret
    network = module.get(setup.name)
    assert network["driver"] == "macvlan"
    assert network["ipam_driver"] == setup.args["ipam_driver"]
    assert network["ipam_options"] == {"pool": setup.pool["name"]}
    configured = {k: setup.pool[k] for k in ("subnet", "gateway")}
    assert network["ipam_config"] == [dict(configured, ip_range=setup.pool["range"])]
    for test in (True, False):
        ret = salt_modules(test=test)[1].present(setup.name, **setup.args)
        assert ret["result"] is True and ret["changes"] == {}, ret
        assert "is as configured" in ret["comment"]
    assert module.get(setup.name)["id"] == network["id"]


def test_a_differing_network_is_not_recreated_under_a_container(setup, docker_client, task_image):
    module, _ = salt_modules()
    container = docker_client.containers.run(
        task_image,
        ["sleep", "600"],
        name=f"ipam-st-{setup.uid}",
        labels={LABEL: setup.uid},
        network=setup.name,
        detach=True,
    )
    try:
        before = module.get(setup.name)
        assert before["containers"] == [container.name]
        # Its address came from the plugin's pool.
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][setup.name]["IPAddress"]
        assert ipaddress.ip_address(address) in ipaddress.ip_network(setup.pool["range"])
        for test in (True, False):
            ret = salt_modules(test=test)[1].present(
                setup.name, **dict(setup.args, macvlan_mode="private")
            )
            assert ret["result"] is False and ret["changes"] == {}, ret
            assert "options:" in ret["comment"] and "'macvlan_mode': 'private'" in ret["comment"]
            assert container.name in ret["comment"] and "nothing was changed" in ret["comment"]
        assert module.get(setup.name) == before
    finally:
        container.remove(force=True)


def test_a_differing_network_is_recreated_when_nothing_is_attached(setup):
    module, _ = salt_modules()
    before = module.get(setup.name)
    wanted = dict(setup.args, macvlan_mode="private")
    ret = salt_modules(test=True)[1].present(setup.name, **wanted)
    assert ret["result"] is None and "would be re-created" in ret["comment"], ret
    assert module.get(setup.name)["id"] == before["id"]
    ret = salt_modules()[1].present(setup.name, **wanted)
    assert ret["result"] is True and "re-created" in ret["comment"], ret
    assert ret["changes"]["old"]["options"]["macvlan_mode"] == "bridge"
    after = module.get(setup.name)
    assert after["id"] != before["id"] and after["options"]["macvlan_mode"] == "private"
    # And back.
    assert salt_modules()[1].present(setup.name, **setup.args)["result"] is True
    assert module.get(setup.name)["options"]["macvlan_mode"] == "bridge"


def test_an_engine_that_does_not_answer(setup, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix:///tmp/no-engine-{setup.uid}.sock")
    # In test mode on a new node the engine is not installed yet: the network would be created.
    ret = salt_modules(test=True)[1].present(setup.name, **setup.args)
    assert ret["result"] is None and "would be created" in ret["comment"], ret
    ret = salt_modules()[1].present(setup.name, **setup.args)
    assert ret["result"] is False and "the Docker engine does not answer" in ret["comment"], ret


# ------------------------------------------------------------------------ the record


def load_runner(pillar: dict, consul_url: str):
    """_runners/ipam.py with Salt's dunders; the master's pillar is given (a runner compiles it
    on the master) and Consul is the test agent."""
    spec = importlib.util.spec_from_file_location(
        f"ipam_runner_{uuid.uuid4().hex[:6]}", REPO / "_runners" / "ipam.py"
    )
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    runner.__opts__ = {"id": "master_master"}
    runner.__context__ = {}
    runner._pillar = lambda: pillar
    runner.CONSUL = consul_url
    return runner


def test_ipam_list_and_status_show_an_allocation(setup, docker_client, task_image, ipam_consul):
    read_only = str(uuid.uuid4())
    ipam_consul.create_token(
        read_only, (REPO / "salt/consul/policies/ipam-read.hcl").read_text(), "ipam-read"
    )
    container = docker_client.containers.run(
        task_image,
        ["sleep", "600"],
        name=f"ipam-st-list-{setup.uid}",
        labels={LABEL: setup.uid},
        network=setup.name,
        environment={"MESOS_TASK_ID": f"web.{setup.uid}"},
        detach=True,
    )
    try:
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][setup.name]["IPAddress"]
        pillar = {"consul": {"acl": {"tokens": {"ipam_read": read_only}}}}
        runner = load_runner(pillar, ipam_consul.url)

        def listed() -> dict:
            found = {r["address"]: r for r in runner.list_(pool=setup.pool["name"])}
            return found.get(address) or {}

        # The task id comes with reconciliation (every second here).
        wait_until(lambda: listed().get("task_id") == f"web.{setup.uid}", 30, 0.5, "recorded")
        record = listed()
        assert (record["pool"], record["host"], record["container_name"]) == (
            setup.pool["name"],
            f"state-{setup.uid}",
            container.name,
        )
        assert address in {r["address"] for r in runner.list_()}
        status = load_module("_modules", "saltyard_ipam").status(setup.args["plugin_socket"])
        (pool,) = status["pools"]
        assert pool["name"] == setup.pool["name"] and pool["allocated"] >= 1, status
    finally:
        container.remove(force=True)


def test_ipam_list_without_a_token_or_with_a_denied_one_fails_naming_why(ipam_consul):
    runner = load_runner({}, ipam_consul.url)
    answer = runner.list_()
    assert "pillar consul:acl:tokens:ipam_read is empty" in answer["Error"]
    assert runner.__context__["retcode"] == 1
    runner = load_runner(
        {"consul": {"acl": {"tokens": {"ipam_read": str(uuid.uuid4())}}}}, ipam_consul.url
    )
    answer = runner.list_()
    assert "reading the allocations under saltyard/ipam/" in answer["Error"], answer
    assert runner.__context__["retcode"] == 1
