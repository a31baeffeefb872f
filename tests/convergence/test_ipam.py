"""The ipam role in the local cluster (issue 17 items 3-5; docs/ipam.md): the IPAM plugin runs on
every agent before Docker, each agent has the `macvlan` network on its own eth0 with the plugin
as IPAM driver, and a Marathon app on that network gets task addresses from the pool that lb1
reaches directly and through its virtual host, recorded in Consul with their task ids and shown
by `salt-run ipam.list`; a network whose settings differ is re-created only when nothing is
attached to it."""

from __future__ import annotations

import base64
import ipaddress
import json
import time
import uuid

import pytest

from tests.convergence.helpers import host
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

APP_ID = "/convergence/macvlan-web"
SERVICE = "convergence-macvlan-web"  # the bridge's name for the app id
PORT = 8080
# Each task serves its own Marathon task id, so an answer tells which task gave it.
CMD = (
    'mkdir -p /tmp/www && cd /tmp/www && printf %s "$MESOS_TASK_ID" > id && '
    f"exec python3 -m http.server {PORT}"
)
NETWORK = "macvlan"
SOCKET = "/run/docker/plugins/saltyard-ipam.sock"
# State runs one after another on one minion: Salt refuses a state run while the last one's job
# is still finishing ("... is running as PID"); queue=True waits for it instead.
SINGLE = ("state.single", "queue=True")
APPLY = ("state.apply", "queue=True")


@pytest.fixture(scope="module")
def agents(cluster, converged) -> list:
    return [n for n in cluster.nodes if n.has_role("mesos-agent")]


@pytest.fixture(scope="module")
def pool(cluster, agents):
    (first,) = cluster.pillar(agents[0].name, "ipam:pools")[:1]
    return first


@pytest.fixture(scope="module")
def marathon(cluster, converged) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


def network_on(cluster, node: str) -> dict | None:
    return cluster.salt([node], "macvlan_network.get", NETWORK)[node]


def test_the_plugin_runs_before_docker_on_every_agent(cluster, agents):
    for agent in agents:
        h = host(agent.name)
        assert h.service("saltyard-ipam").is_running, agent.name
        assert h.service("saltyard-ipam").is_enabled, agent.name
        assert h.socket(f"unix://{SOCKET}").is_listening, agent.name
        assert h.file("/etc/saltyard/ipam.token").mode == 0o600, agent.name
        # systemd's own view of the order: the engine starts after the plugin and wants it.
        after = h.check_output("systemctl show -p After --value docker.service").split()
        wants = h.check_output("systemctl show -p Wants --value docker.service").split()
        assert "saltyard-ipam.service" in after and "saltyard-ipam.service" in wants, agent.name
        before = h.check_output("systemctl show -p Before --value saltyard-ipam.service")
        assert "docker.service" in before.split(), agent.name
        status = cluster.salt([agent.name], "saltyard_ipam.status")[agent.name]
        assert status["host"] == agent.name and status["pools"][0]["name"] == "tasks", status


def test_every_agent_has_the_macvlan_network_on_its_own_interface(cluster, agents, pool):
    for agent in agents:
        network = network_on(cluster, agent.name)
        assert network is not None, agent.name
        assert network["driver"] == "macvlan"
        # The parent holds the agent's inventory address: a container's eth0 (its veth on the
        # cluster bridge, inside the agent's own network namespace), a VM's virtio NIC (its tap
        # on that bridge); never the host machine's interface.
        _, addresses = cluster.exec(agent.name, ["ip", "-4", "-o", "addr", "show"])
        (parent,) = [
            line.split()[1] for line in addresses.splitlines() if f"inet {agent.address}/" in line
        ]
        if not agent.is_vm:
            assert parent == "eth0", addresses
        assert network["options"] == {"parent": parent, "macvlan_mode": "bridge"}, network
        assert network["ipam_driver"] == "saltyard-ipam"
        assert network["ipam_options"] == {"pool": "tasks"}
        assert network["ipam_config"] == [
            {"subnet": pool["subnet"], "gateway": pool["gateway"], "ip_range": pool["range"]}
        ], network


def test_the_plugins_and_the_runners_tokens_have_exactly_their_policies(cluster, agents):
    server = next(n.name for n in cluster.nodes if n.has_role("consul-server"))
    master = cluster.inventory.master.name
    tokens = {
        "ipam": cluster.pillar(agents[0].name, "consul:acl:tokens:ipam"),
        "ipam-read": cluster.pillar(master, "consul:acl:tokens:ipam_read"),
    }
    for policy, token in tokens.items():
        assert token and "*" not in token, policy
        found = cluster.salt([server], "consul_acl.token", token)[server]
        assert [p["Name"] for p in found["Policies"]] == [policy], found
    # Each node gets only its own: the master no plugin token, an agent no reader's.
    assert cluster.pillar(master, "consul:acl:tokens:ipam") == ""
    assert cluster.pillar(agents[0].name, "consul:acl:tokens:ipam_read") == ""
    # The reader cannot write.
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"]
    cmd += ["-H", f"X-Consul-Token: {tokens['ipam-read']}", "-d", "x"]
    _, status = cluster.exec(master, [*cmd, "http://127.0.0.1:8500/v1/kv/saltyard/ipam/probe"])
    assert status == "403", status


def test_a_configuration_the_plugin_refuses_never_replaces_the_live_one(cluster, agents):
    """A value only the plugin's own parser knows to be wrong (the render passes it): the
    check_cmd refuses it, the live file stays and the plugin is not restarted."""
    agent = agents[0].name
    look = ["sh", "-c", "md5sum /etc/saltyard/ipam.json; systemctl show -p MainPID saltyard-ipam"]
    _, before = cluster.exec(agent, look)
    out = cluster.salt([agent], *APPLY, "ipam", 'pillar={"ipam": {"log_level": "LOUD"}}')[agent]
    assert isinstance(out, dict), out
    (config,) = [r for r in out.values() if r["__id__"] == "ipam-config"]
    assert config["result"] is False, config
    assert "log_level 'LOUD': one of DEBUG, INFO, WARNING, ERROR" in config["comment"], config
    assert cluster.exec(agent, look)[1] == before


def present(cluster, marathon: str, app: dict) -> None:
    out = cluster.salt(
        [marathon],
        "state.single",
        "marathon_application.present",
        f"name={app['id']}",
        f"app={json.dumps(app)}",
        "timeout=300",
    )[marathon]
    (ret,) = out.values()
    assert ret["result"] is True, ret


def macvlan_app(image: str) -> dict:
    """Two tasks on the macvlan network, on two agents (fat and uat: one agent per env in the
    local cluster), registered in env fat by the label (the bridge reads the env from the
    saltyard.env label before the constraints), so one virtual host serves both."""
    return {
        "id": APP_ID,
        "cmd": CMD,
        "cpus": 0.1,
        "mem": 64,
        "instances": 2,
        "constraints": [["env", "LIKE", "fat|uat"], ["hostname", "UNIQUE"]],
        "labels": {"saltyard.env": "fat"},
        "networks": [{"mode": "container", "name": NETWORK}],
        "container": {
            "type": "DOCKER",
            "docker": {"image": image},
            "portMappings": [{"containerPort": PORT, "name": "http"}],
        },
        "healthChecks": [{"protocol": "HTTP", "path": "/id", "portIndex": 0, "intervalSeconds": 2}],
    }


@pytest.fixture(scope="module")
def web(cluster, marathon, agents, registry_image):
    envs = {a.env for a in agents}
    if not {"fat", "uat"} <= envs:
        pytest.skip("needs agent-fat and agent-uat (profile full): tasks on two agents")
    present(cluster, marathon, macvlan_app(registry_image))

    def healthy() -> list[dict]:
        found = cluster.salt([marathon], "marathon_api.tasks", APP_ID)[marathon]
        return [
            t
            for t in found
            if t.get("healthCheckResults") and all(h["alive"] for h in t["healthCheckResults"])
        ]

    wait_until(lambda: len(healthy()) == 2, 180, 2, "two healthy tasks on the macvlan network")
    yield healthy()
    cluster.salt(
        [marathon], "state.single", "marathon_application.absent", f"name={APP_ID}", "force=True"
    )


def task_address(task: dict) -> str:
    (address,) = [a["ipAddress"] for a in task["ipAddresses"] if a["protocol"] == "IPv4"]
    return address


def allocations(cluster, consul_node: str) -> dict[str, dict]:
    """Consul's own record (the KV API on a server, master token): address -> allocation."""
    token = cluster.pillar(consul_node, "consul:acl:master_token")
    cmd = ["curl", "-sS", "-H", f"X-Consul-Token: {token}"]
    _, out = cluster.exec(
        consul_node, [*cmd, "http://127.0.0.1:8500/v1/kv/saltyard/ipam/tasks/?recurse"], False
    )
    entries = json.loads(out) if out.strip().startswith("[") else []
    records = [json.loads(base64.b64decode(e["Value"])) for e in entries]
    return {r["address"]: r for r in records}


def ipam_list(cluster) -> list[dict]:
    """`salt-run ipam.list` on the master, as an operator runs it."""
    _, out = cluster.exec(cluster.inventory.master.name, ["salt-run", "--out=json", "ipam.list"])
    # Salt prints warnings around the JSON, some of them starting with "[" too ("[WARNING ]").
    lines = out.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith("["):
            try:
                return json.JSONDecoder().raw_decode("".join(lines[index:]))[0]
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"salt-run ipam.list printed no JSON list:\n{out}")


def test_tasks_on_two_agents_get_distinct_addresses_from_the_pool(web, pool):
    hosts = {t["host"] for t in web}
    addresses = [task_address(t) for t in web]
    assert len(hosts) == 2, hosts
    assert len(set(addresses)) == 2, addresses
    network = ipaddress.ip_network(pool["range"])
    assert all(ipaddress.ip_address(a) in network for a in addresses), (addresses, network)
    # Marathon shows no host port for a mapping without one.
    assert all(t["ports"] == [] for t in web), web


def answers_directly(cluster, lb: str, task: dict) -> None:
    """The task's own address answers lb1 with the task's id. Asked again (bounded) when an
    answer is wrong: stop 26's CI got one empty answer, exit 0, from a task Marathon called
    healthy, most likely `docker exec` losing a short command's output (docker/docker-py#2042,
    moby/moby#27289), which Cluster.exec cannot tell from an empty output. If a wrong answer
    persists, the failure shows lb1's last answers (status line and headers: who gave them)
    and lb1's neighbour entry for the address."""
    address = task_address(task)
    cmd = ["curl", "-sS", "-i", "--max-time", "5", f"http://{address}:{PORT}/id"]
    answers: list[str] = []

    def answers_its_id() -> bool:
        answers.append(cluster.exec(lb, cmd, False)[1])
        return answers[-1].rstrip().endswith("\n" + task["id"])

    try:
        wait_until(answers_its_id, 30, 2, f"{address} to answer {task['id']}")
    except AssertionError:
        _, neigh = cluster.exec(lb, ["ip", "neigh", "show", address], False)
        raise AssertionError(
            f"{address} ({task['host']}): {answers[-3:]}; lb1 neighbour: {neigh}"
        ) from None


def test_lb1_reaches_each_task_directly_and_through_its_virtual_host(cluster, web):
    lb = next(n for n in cluster.nodes if n.has_role("lb"))
    domain = cluster.pillar(lb.name, "saltyard:cluster:domain")
    expected = {t["id"] for t in web}
    for task in web:
        answers_directly(cluster, lb.name, task)
    vhost = f"{SERVICE}.fat.{domain}"
    url = f"http://{lb.address}/id"

    def answered_by() -> set[str]:
        seen = set()
        for _ in range(12):
            code, answer = cluster.exec(
                lb.name, ["curl", "-sS", "--max-time", "5", "-H", f"Host: {vhost}", url], False
            )
            if code == 0:
                seen.add(answer)
        return seen

    # The bridge registers each task at its own address and container port; consul-template
    # renders them into lb1's nginx.
    wait_until(lambda: answered_by() == expected, 90, 2, f"{vhost} served by both tasks")


def test_the_addresses_are_in_consul_with_their_task_ids(cluster, web):
    server = next(n.name for n in cluster.nodes if n.has_role("consul-server"))
    by_task = {task_address(t): t for t in web}

    def recorded() -> bool:
        found = allocations(cluster, server)
        return all(
            address in found and found[address].get("task_id") == task["id"]
            for address, task in by_task.items()
        )

    # The task id is recorded by the plugin's reconciliation (every 30 s) once it sees the
    # container holding the address.
    wait_until(recorded, 120, 3, "each task's address recorded in Consul with its task id")
    found = allocations(cluster, server)
    for address, task in by_task.items():
        assert found[address]["host"] == task["host"], found[address]
        assert found[address]["network"] == NETWORK, found[address]
        assert found[address]["container_name"], found[address]


def test_salt_run_ipam_list_shows_them(cluster, web):
    listed = {r["address"]: r for r in ipam_list(cluster)}
    for task in web:
        record = listed[task_address(task)]
        assert (record["pool"], record["task_id"], record["host"]) == (
            "tasks",
            task["id"],
            task["host"],
        ), record


def bridge_health(cluster) -> dict:
    """The bridge's /health on the discovery node (loopback only)."""
    node = next(n.name for n in cluster.nodes if n.has_role("discovery"))
    _, out = cluster.exec(node, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:9158/health"])
    return json.loads(out)


def test_a_gone_hosts_allocation_is_freed_by_the_bridge_after_the_grace(cluster, web, pool):
    """A host gone for good never frees its allocations (its plugin went with it), and no other
    host's plugin looks at them: the bridge frees a record whose Marathon task is gone once it
    has been missing for the grace (20 s in the local site), and not before; the running
    tasks' records stay."""
    server = next(n.name for n in cluster.nodes if n.has_role("consul-server"))
    token = cluster.pillar(server, "consul:acl:master_token")
    grace = cluster.pillar(server, "discovery:ipam_reconcile:grace")
    taken = set(allocations(cluster, server))
    free = [str(a) for a in ipaddress.ip_network(pool["range"]).hosts() if str(a) not in taken]
    address = free[-1]
    key = f"saltyard/ipam/tasks/{address}"
    record = {
        "pool": "tasks",
        "address": address,
        "host": "agent-gone",  # in no inventory: nothing runs there any more
        "mac": "02:42:ac:1e:00:ee",
        "network": NETWORK,
        "task_id": f"convergence_gone.{uuid.uuid4()}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    put = [
        "curl", "-sS", "-X", "PUT", "-H", f"X-Consul-Token: {token}", "--data-binary",
        json.dumps(record), f"http://127.0.0.1:8500/v1/kv/{key}?cas=0",
    ]  # fmt: skip
    written = time.monotonic()
    assert cluster.exec(server, put)[1].strip() == "true", f"{address} was taken meanwhile"
    try:
        # Seen missing by the bridge, and not freed then: the grace has not passed.
        seen = wait_until(
            lambda: key in bridge_health(cluster)["ipam"]["missing"],
            90,
            2,
            f"the bridge to find {address}'s task gone",
        )
        assert seen and address in allocations(cluster, server)
        wait_until(lambda: address not in allocations(cluster, server), 120, 2, f"{address} freed")
        assert time.monotonic() - written >= grace, "freed before the grace had passed"
        health = bridge_health(cluster)
        assert health["counters"]["ipam_frees"] >= 1, health
        found = allocations(cluster, server)
        for task in web:  # their tasks run: never freed
            assert found[task_address(task)]["task_id"] == task["id"], found
    finally:
        cluster.exec(
            server,
            ["curl", "-sS", "-X", "DELETE", "-H", f"X-Consul-Token: {token}",
             f"http://127.0.0.1:8500/v1/kv/{key}"],
            False,
        )  # fmt: skip


def test_a_network_that_differs_is_not_recreated_under_a_container(cluster, web, pool):
    """While a task is attached, the state refuses to re-create a network whose settings
    differ, names the container, and leaves the network as it was."""
    agent = web[0]["host"]
    before = network_on(cluster, agent)
    assert before["containers"], before
    args = [
        f"name={NETWORK}",
        "parent=eth0",
        "macvlan_mode=private",
        f"subnet={pool['subnet']}",
        f"gateway={pool['gateway']}",
        f"ip_range={pool['range']}",
        'ipam_options={"pool": "tasks"}',
    ]
    for test in ("test=True", "test=False"):
        out = cluster.salt([agent], *SINGLE, "macvlan_network.present", *args, test)[agent]
        assert isinstance(out, dict), out
        (ret,) = out.values()
        assert ret["result"] is False, ret
        assert "macvlan_mode" in ret["comment"] and "bridge" in ret["comment"], ret
        assert before["containers"][0] in ret["comment"], ret
        assert "nothing was changed" in ret["comment"], ret
    assert network_on(cluster, agent) == before


def test_the_state_refuses_a_parent_the_node_lacks(cluster, agents, pool):
    agent = agents[0].name
    before = network_on(cluster, agent)
    out = cluster.salt(
        [agent],
        *SINGLE,
        "macvlan_network.present",
        f"name={NETWORK}",
        "parent=nosuch0",
        f"subnet={pool['subnet']}",
        f"gateway={pool['gateway']}",
    )[agent]
    (ret,) = out.values()
    assert ret["result"] is False, ret
    assert "parent interface 'nosuch0' does not exist on this node" in ret["comment"], ret
    assert network_on(cluster, agent) == before
    # Through the role's pillar: refused when the role renders, on the node's own grains.
    out = cluster.salt(
        [agent], *APPLY, "ipam", 'pillar={"ipam": {"network": {"parent": "nosuch0"}}}'
    )[agent]
    assert "pillar ipam:network:parent 'nosuch0'" in json.dumps(out), out
    assert network_on(cluster, agent) == before


def test_after_the_app_its_addresses_are_free_and_a_differing_network_is_recreated(
    cluster, web, marathon, pool
):
    server = next(n.name for n in cluster.nodes if n.has_role("consul-server"))
    addresses = {task_address(t) for t in web}
    agent = web[0]["host"]
    cluster.salt(
        [marathon], "state.single", "marathon_application.absent", f"name={APP_ID}", "force=True"
    )
    # Docker releases each address as its container goes (ReleaseAddress).
    wait_until(
        lambda: not addresses & set(allocations(cluster, server)),
        90,
        2,
        "the app's addresses released",
    )
    wait_until(lambda: not network_on(cluster, agent)["containers"], 60, 2, "nothing attached")
    before = network_on(cluster, agent)
    args = [
        f"name={NETWORK}",
        "parent=eth0",
        "macvlan_mode=private",
        f"subnet={pool['subnet']}",
        f"gateway={pool['gateway']}",
        f"ip_range={pool['range']}",
        'ipam_options={"pool": "tasks"}',
    ]
    try:
        out = cluster.salt([agent], *SINGLE, "macvlan_network.present", *args)[agent]
        assert isinstance(out, dict), out
        (ret,) = out.values()
        assert ret["result"] is True and "re-created" in ret["comment"], ret
        after = network_on(cluster, agent)
        assert after["options"]["macvlan_mode"] == "private" and after["id"] != before["id"]
    finally:
        # The role puts it back (re-created again), and then has nothing left to do.
        started = time.monotonic()
        cluster.salt([agent], *APPLY, "ipam")
        out = cluster.salt([agent], *APPLY, "ipam", "test=True")[agent]
        assert isinstance(out, dict), out
        changes = {k: v["changes"] for k, v in out.items() if v.get("changes")}
        assert not changes, (changes, time.monotonic() - started)
    assert network_on(cluster, agent)["options"]["macvlan_mode"] == "bridge"
