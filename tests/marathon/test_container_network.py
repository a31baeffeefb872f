"""Apps on a named container network (Marathon 1.5+ ``networks: [{mode: container, name}]``):
the public ``marathon`` client drives the emulator, whose tasks join a user-defined Docker
network the test creates (``user_network``, a bridge network on a /24 of its own).

What Marathon does, and so the emulator: the task's ``ipAddresses`` are its addresses on that
network; a port mapping without ``hostPort`` takes no host port (``ports`` holds only the host
ports mapped); ``PORT<i>`` is the container port of such a mapping; health checks reach it at
the task's own address and container port."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
import requests
from marathon import MarathonApp, MarathonClient
from marathon.models.app import MarathonHealthCheck
from marathon.models.container import (
    MarathonContainer,
    MarathonContainerPortMapping,
    MarathonDockerContainer,
)
from marathon_helpers import LABEL, TASK_IMAGE, containers_of, wait_until

from saltyard.marathon_emulator.agents import Agent, docker_run_kwargs
from saltyard.marathon_emulator.appdef import ValidationFailed, normalize, validate
from saltyard.marathon_emulator.launch import container_ports_for
from tests.support import docker as support_docker


def net_app(network: str | list[str], mappings: list, cmd: str, **extra) -> MarathonApp:
    names = [network] if isinstance(network, str) else network
    return MarathonApp(
        cmd=cmd,
        instances=1,
        cpus=0.1,
        mem=64,
        networks=[{"mode": "container", "name": n} for n in names],
        container=MarathonContainer(
            docker=MarathonDockerContainer(image=TASK_IMAGE), port_mappings=mappings
        ),
        health_checks=[
            MarathonHealthCheck(
                protocol="HTTP",
                path="/",
                port_index=0,
                interval_seconds=1,
                timeout_seconds=3,
                grace_period_seconds=20,
                max_consecutive_failures=3,
            )
        ],
        **extra,
    )


@pytest.fixture(scope="module")
def client(emulator) -> MarathonClient:
    return MarathonClient(emulator.url, timeout=10)


def healthy(client: MarathonClient, app_id: str, timeout: float = 40):
    def done():
        app = client.get_app(app_id, embed_tasks=True)
        return app if app.tasks_healthy == app.instances == len(app.tasks) else False

    return wait_until(done, timeout, message=f"{app_id} healthy")


def container_env(container) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def test_task_joins_the_network_with_its_own_address_and_no_host_port(
    client, emulator, docker_client, user_network
):
    network, subnet = user_network
    app_id = f"/net/web-{uuid.uuid4().hex[:6]}"
    # Mapping 0: a container port only (no hostPort); mapping 1 asks for a host port too.
    client.create_app(
        app_id,
        net_app(
            network.name,
            [
                MarathonContainerPortMapping(container_port=8080, name="http"),
                MarathonContainerPortMapping(container_port=9090, host_port=0, name="admin"),
            ],
            "python3 -m http.server 9090 & exec python3 -m http.server 8080",
        ),
    )
    try:
        app = healthy(client, app_id)  # the check reached the task at its address:8080
        (task,) = app.tasks
        (address,) = [a.ip_address for a in task.ip_addresses]
        assert ipaddress.ip_address(address) in subnet
        (host_port,) = task.ports  # only the mapping that asked for one
        assert host_port != 9090
        mappings = app.container.port_mappings
        assert [m.host_port for m in mappings] == [None, 0]
        assert all(m.service_port for m in mappings)
        assert task.service_ports == [m.service_port for m in mappings]
        assert app.port_definitions == []
        assert app.networks == [{"mode": "container", "name": network.name}]
        # Rendered as Marathon 1.5+ renders it: no hostPort at all where none was asked for.
        raw = requests.get(f"{emulator.url}/v2/apps{app_id}", timeout=5).json()["app"]
        assert "hostPort" not in raw["container"]["portMappings"][0]
        assert raw["container"]["portMappings"][1]["hostPort"] == 0
        tasks = requests.get(f"{emulator.url}/v2/apps{app_id}/tasks", timeout=5).json()
        assert tasks["tasks"][0]["ipAddresses"] == [{"ipAddress": address, "protocol": "IPv4"}]

        # The real container: on that network only, publishing only the host-port mapping.
        (container,) = containers_of(docker_client, emulator.cluster, app_id)
        container.reload()
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {network.name}
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert set(bindings) == {"9090/tcp"}
        assert bindings["9090/tcp"][0]["HostPort"] == str(host_port)
        env = container_env(container)
        assert env["PORT0"] == "8080" and env["PORT_8080"] == "8080"
        assert env["PORT1"] == env["PORT_ADMIN"] == env["PORT_9090"] == str(host_port)
        assert "PORT_HTTP" not in env  # Marathon names host ports only
        assert env["PORTS"] == env["PORT"] == str(host_port)
        assert container.labels[f"{LABEL}.ports"] == str(host_port)
        assert container.labels[f"{LABEL}.host-ports-by-index"] == f"-,{host_port}"

        # Served on the task's own address and container port, and on the published one.
        assert requests.get(f"http://{address}:8080/", timeout=5).status_code == 200
        # The health check covers only port 8080: the 9090 server, started beside it, may not
        # listen yet, and docker-proxy then accepts and closes at once. Wait for it, bounded.
        published = f"http://127.0.0.1:{host_port}/"
        served = wait_until(
            lambda: requests.get(published, timeout=5),
            15,
            message=published,
            ignore=(requests.ConnectionError,),
        )
        assert served.status_code == 200
    finally:
        client.delete_app(app_id, force=True)


def test_a_network_the_agent_lacks_fails_the_launch_with_its_name(client, emulator, docker_client):
    missing = f"{support_docker.SESSION}-absent-{uuid.uuid4().hex[:4]}"
    app_id = f"/net/lost-{uuid.uuid4().hex[:6]}"
    client.create_app(
        app_id,
        net_app(missing, [MarathonContainerPortMapping(container_port=8080)], "sleep 600"),
    )
    try:

        def failed():
            body = requests.get(
                f"{emulator.url}/v2/apps{app_id}?embed=apps.lastTaskFailure", timeout=5
            ).json()["app"]
            return body.get("lastTaskFailure")

        failure = wait_until(failed, 20, message="the launch to fail")
        assert failure["state"] == "TASK_FAILED"
        assert repr(missing) in failure["message"]
        assert "do not exist on agent" in failure["message"]
        app = client.get_app(app_id)
        assert app.tasks_running == 0 and app.deployments  # the deployment cannot finish
        assert containers_of(docker_client, emulator.cluster, app_id) == []
    finally:
        client.delete_app(app_id, force=True)


def test_an_app_can_join_several_container_networks(client, emulator, docker_client, user_network):
    first, first_subnet = user_network
    with support_docker.user_network(docker_client, "second") as (second, second_subnet):
        app_id = f"/net/two-{uuid.uuid4().hex[:6]}"
        client.create_app(
            app_id,
            net_app(
                [first.name, second.name],
                [MarathonContainerPortMapping(container_port=8080)],
                "exec python3 -m http.server 8080",
            ),
        )
        try:
            (task,) = healthy(client, app_id).tasks
            addresses = [ipaddress.ip_address(a.ip_address) for a in task.ip_addresses]
            assert len(addresses) == 2
            assert addresses[0] in first_subnet and addresses[1] in second_subnet
            assert task.ports == []
        finally:
            client.delete_app(app_id, force=True)
            wait_until(
                lambda: not containers_of(docker_client, emulator.cluster, app_id),
                20,
                message="the task container gone",
            )


@pytest.mark.parametrize(
    ("networks", "mappings", "path", "fragment"),
    [
        ([{"mode": "container"}], [], "/networks(0)", "needs a name"),
        (
            [{"mode": "container", "name": "a"}, {"mode": "container/bridge"}],
            [],
            "/networks",
            "never a mix",
        ),
        (
            [{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
            [{"containerPort": 80, "hostPort": 0}],
            "/container/portMappings(0)/hostPort",
            "several container networks",
        ),
    ],
)
def test_definitions_marathon_refuses_get_422(emulator, networks, mappings, path, fragment):
    body = {
        "id": f"/net/bad-{uuid.uuid4().hex[:6]}",
        "cmd": "sleep 600",
        "networks": networks,
        "container": {"docker": {"image": TASK_IMAGE}, "portMappings": mappings},
    }
    r = requests.post(emulator.url + "/v2/apps", json=body, timeout=5)
    assert r.status_code == 422, r.text
    match = [d for d in r.json()["details"] if d["path"] == path]
    assert match and any(fragment in e for e in match[0]["errors"]), r.text


def test_adopted_tasks_keep_their_address_and_no_host_port(
    make_emulator, docker_client, user_network
):
    network, subnet = user_network
    emu = make_emulator("net-adopt").start()
    client = MarathonClient(emu.url, timeout=10)
    client.create_app(
        "/net/adopt",
        net_app(
            network.name,
            [MarathonContainerPortMapping(container_port=8080)],
            "exec python3 -m http.server 8080",
        ),
    )
    (before,) = healthy(client, "/net/adopt").tasks
    emu.kill()
    emu.start()
    (after,) = healthy(client, "/net/adopt").tasks  # its check reaches it at address:8080
    assert after.id == before.id and after.ports == [] == before.ports
    assert [a.ip_address for a in after.ip_addresses] == [a.ip_address for a in before.ip_addresses]
    client.delete_app("/net/adopt", force=True)
    wait_until(
        lambda: not containers_of(docker_client, emu.cluster, "/net/adopt"),
        20,
        message="the task container gone",
    )


# ---------------------------------------------------------------------- the rules, no Docker


def test_normalize_keeps_container_network_mappings_without_host_ports():
    raw = {
        "id": "/n",
        "cmd": "x",
        "networks": [{"name": "macvlan"}],  # mode defaults to container
        "container": {
            "docker": {"image": "i"},
            "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}],
        },
    }
    validate(raw)
    app = normalize(raw, None, set())
    assert app["networks"] == [{"name": "macvlan", "mode": "container"}]
    first, second = app["container"]["portMappings"]
    assert "hostPort" not in first and second["hostPort"] == 0
    assert first["servicePort"] and second["servicePort"]
    assert app["portDefinitions"] == []
    # BRIDGE keeps Marathon's "a missing hostPort is 0"
    bridged = normalize(
        raw | {"networks": [{"mode": "container/bridge"}]}, None, {first["servicePort"]}
    )
    assert [pm["hostPort"] for pm in bridged["container"]["portMappings"]] == [0, 0]
    # No mappings at all: Marathon's default, one container port chosen at launch.
    bare = normalize(raw | {"container": {"docker": {"image": "i"}}}, None, set())
    (default,) = bare["container"]["portMappings"]
    assert (default["containerPort"], default.get("hostPort")) == (0, None)
    with pytest.raises(ValidationFailed):
        validate(raw | {"networks": [{"mode": "container"}]})


def test_container_ports_and_published_ports():
    mappings = [
        {"containerPort": 80},
        {"containerPort": 0, "hostPort": 0},
        {"containerPort": 0},
        {"containerPort": 90, "hostPort": 0},
    ]
    host_ports = [None, 31001, None, 31002]
    ports = container_ports_for(mappings, host_ports)
    assert ports[0] == 80 and ports[1] == 31001 and ports[3] == 90
    assert 1025 <= ports[2] <= 65535 and ports[2] not in (80, 90, 31001, 31002)
    app = {
        "networks": [{"mode": "container", "name": "macvlan"}],
        "container": {"docker": {"image": "i"}, "portMappings": mappings},
    }
    agent = Agent.parse("a=unix:///var/run/docker.sock:@bind=127.0.0.1")
    kwargs = docker_run_kwargs(app, "t", agent, host_ports, ports, {}, {}, None, True)
    assert kwargs["network"] == "macvlan" and "network_mode" not in kwargs
    assert kwargs["ports"] == {
        "31001/tcp": ("127.0.0.1", 31001),
        "90/tcp": ("127.0.0.1", 31002),
    }
