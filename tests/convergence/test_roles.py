"""Each role, checked on the node with testinfra after the highstate."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.convergence.helpers import PROFILE, host
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def nodes_with(role: str) -> list[str]:
    from saltyard import inventory

    return [n.name for n in inventory.load().profile(PROFILE) if n.has_role(role)]


@pytest.mark.parametrize("node", nodes_with("base"))
def test_base_role(converged, node):
    h = host(node)
    for package in ("chrony", "rsyslog", "curl", "jq"):
        assert h.package(package).is_installed, package
    assert h.service("rsyslog").is_running
    assert h.service("chrony").is_running
    assert h.service("salt-minion").is_running
    # No crash loop behind a minion that answers: a leftover process of an earlier minion once
    # kept answering jobs while every new one exited (saltyard/bootstrap/deploy.py).
    restarts = h.check_output("systemctl show --property=NRestarts --value salt-minion")
    assert restarts == "0", f"salt-minion restarted itself {restarts} times"
    # apt fetches no description translations (base:apt:languages): none came with a refresh
    # after the setting (a VM's image may still hold older ones until its first refresh).
    languages = "/etc/apt/apt.conf.d/60saltyard-languages"
    assert 'Acquire::Languages:: "none";' in h.check_output("apt-config dump Acquire::Languages")
    fetched = h.check_output(f"find /var/lib/apt/lists -name '*Translation*' -newer {languages}")
    assert fetched == "", fetched
    # The cluster CA is in the system store (base.ca, ca_store.updated) beside the Mozilla
    # set: in the bundle that curl and most clients read, and under its hash for OpenSSL's
    # directory lookup.
    ca = "/usr/local/share/ca-certificates/saltyard-cluster.crt"
    assert h.file("/etc/ssl/certs/saltyard-cluster.pem").linked_to == ca
    for lookup in ("-CAfile /etc/ssl/certs/ca-certificates.crt", "-CApath /etc/ssl/certs"):
        assert h.check_output(f"openssl verify {lookup} {ca}") == f"{ca}: OK", lookup
    bundled = int(h.check_output("grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt"))
    assert bundled > 100, f"only {bundled} certificates in the system bundle"
    limits = h.file("/etc/security/limits.d/60-saltyard.conf")
    assert "*    hard  nofile  1048576" in limits.content_string
    sysctl_conf = h.file("/etc/sysctl.d/60-saltyard.conf")
    assert sysctl_conf.contains("net.core.somaxconn")
    assert h.sysctl("net.core.somaxconn") == 4096
    # Containers share the host's clock: chronyd must not adjust it.
    assert h.file("/etc/default/chrony").contains('DAEMON_OPTS="-F 1 -x"')
    chrony = h.file("/etc/chrony/chrony.conf").content_string
    assert "pool" not in chrony, "no node may reach NTP servers outside the cluster"
    if node == "master":
        assert "local stratum 10" in chrony
        assert "allow 172.30.0.0/24" in chrony
    else:
        assert "server master iburst" in chrony


@pytest.mark.parametrize("node", nodes_with("docker"))
def test_docker_role(converged, node):
    h = host(node)
    assert h.package("docker.io").is_installed
    assert h.service("docker").is_running
    assert h.service("docker").is_enabled
    config = json.loads(h.file("/etc/docker/daemon.json").content_string)
    assert config["storage-driver"] == "overlay2"
    assert config["log-driver"] == "syslog"
    info = json.loads(h.check_output("docker info --format '{{json .}}'"))
    assert info["Driver"] == "overlay2"
    assert dict(info["DriverStatus"]).get("Supports d_type") == "true"
    assert info["LoggingDriver"] == "syslog"


@pytest.mark.parametrize("node", nodes_with("zookeeper"))
def test_zookeeper_role(converged, node):
    from saltyard import inventory

    inv = inventory.load()
    members = [n for n in inv.nodes if n.has_role("zookeeper")]
    my_id = [n.name for n in members].index(node) + 1
    h = host(node)
    assert h.package("zookeeperd").is_installed
    assert h.service("zookeeper").is_running
    zoo_cfg = h.file("/etc/zookeeper/conf/zoo.cfg").content_string
    for index, member in enumerate(members, start=1):
        assert f"server.{index}={member.address}:2888:3888" in zoo_cfg
    assert "dataDir=/var/lib/zookeeper" in zoo_cfg
    assert h.file("/etc/zookeeper/conf/myid").content_string.strip() == str(my_id)
    # The server answers its health probe (the JVM takes a few seconds after a restart).
    probe = (
        "for i in $(seq 30); do "
        "r=$(exec 3<>/dev/tcp/127.0.0.1/2181 && printf ruok >&3 && cat <&3) && "
        '[ "$r" = imok ] && echo "$r" && exit 0; sleep 1; done; exit 1'
    )
    assert h.check_output(f"bash -c '{probe}'") == "imok"


def _zk_url(path: str) -> str:
    from saltyard import inventory

    members = [n for n in inventory.load().nodes if n.has_role("zookeeper")]
    return "zk://" + ",".join(f"{n.address}:2181" for n in members) + path


@pytest.mark.parametrize("node", nodes_with("mesos-master"))
def test_mesos_master_role(converged, node):
    from saltyard import inventory

    masters = [n for n in inventory.load().nodes if n.has_role("mesos-master")]
    h = host(node)
    assert h.file("/etc/mesos/zk").content_string.strip() == _zk_url("/mesos")
    flags = {
        "quorum": str(len(masters) // 2 + 1),
        "work_dir": "/var/lib/mesos",
        "hostname": node,
        "port": "5050",
    }
    for flag, value in flags.items():
        assert h.file(f"/etc/mesos-master/{flag}").content_string.strip() == value, flag


@pytest.mark.parametrize("node", nodes_with("mesos-agent"))
def test_mesos_agent_role(converged, node):
    from saltyard import inventory

    me = inventory.load().node(node)
    h = host(node)
    assert h.file("/etc/mesos/zk").content_string.strip() == _zk_url("/mesos")
    flags = {
        "containerizers": "docker,mesos",
        "executor_registration_timeout": "10mins",
        "work_dir": "/var/lib/mesos",
        "hostname": node,
        "ip": me.address,
    }
    for flag, value in flags.items():
        assert h.file(f"/etc/mesos-slave/{flag}").content_string.strip() == value, flag
    attributes = h.file("/etc/mesos-slave/attributes").listdir()
    assert attributes == ["env"]
    assert h.file("/etc/mesos-slave/attributes/env").content_string.strip() == me.env
    # The reservation (the inventory's mesos_role): the --default_role flag file, or none.
    role = h.file("/etc/mesos-slave/default_role")
    if me.mesos_role:
        assert role.content_string.strip() == me.mesos_role
    else:
        assert not role.exists


@pytest.mark.parametrize("node", nodes_with("marathon"))
def test_marathon_role(cluster, converged, node):
    h = host(node)
    defaults = h.file("/etc/default/marathon")
    assert defaults.mode == 0o600, "the file holds the HTTP credentials"
    settings = dict(
        line.split("=", 1) for line in defaults.content_string.splitlines() if "=" in line
    )
    assert settings["MARATHON_MASTER"] == _zk_url("/mesos")
    assert settings["MARATHON_ZK"] == _zk_url("/marathon")
    user, password = settings["MARATHON_HTTP_CREDENTIALS"].split(":", 1)
    assert user == "saltyard"
    # Generated on the master, kept in its secret store, never in the repository.
    master = cluster.inventory.master.name
    _, stored = cluster.exec(master, ["cat", "/etc/salt/saltyard-secrets/marathon_http_password"])
    assert password == stored.strip() and len(password) >= 24
    repo = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(
        ["git", "grep", "-l", "-F", password], cwd=repo, capture_output=True, text=True
    )
    assert tracked.stdout == "", "the generated password appears in the repository"


def test_secrets_go_only_to_the_roles_that_need_them(cluster, converged):
    node = next(n.name for n in cluster.nodes if not n.has_role("marathon"))
    creds = cluster.salt([node], "pillar.get", "marathon:http_credentials:password")[node]
    assert creds == ""


@pytest.mark.parametrize("node", nodes_with("kernel"))
def test_kernel_role(cluster, converged, node):
    ret = cluster.salt([node], "kernel_check.meets", "4.4.27")[node]
    assert ret["ok"] is True, ret
    assert ret["running"] == host(node).check_output("uname -r")


def test_nodes_without_docker_role_have_no_engine(cluster, converged):
    for node in nodes_with("base"):
        if node in nodes_with("docker"):
            continue
        h = host(node)
        if cluster.inventory.node(node).is_vm:
            # The VM image carries docker.io for the agent VM (saltyard/localcluster/vm.py,
            # DOCKER_PACKAGES), disabled: no engine runs or starts on a VM without the role.
            for unit in ("docker", "containerd"):
                assert not h.service(unit).is_running, (node, unit)
                assert not h.service(unit).is_enabled, (node, unit)
            assert not h.socket("unix:///run/docker.sock").is_listening, node
        else:
            assert not h.package("docker.io").is_installed, node


def test_master_accepts_exactly_the_inventory_nodes(cluster, converged):
    from saltyard import inventory

    master = cluster.inventory.master.name
    _, out = cluster.exec(master, ["salt-key", "--out=json", "-L"])
    keys = json.loads(out)
    assert set(keys["minions"]) == {n.name for n in inventory.load().nodes}
    h = host(master)
    assert h.service("salt-master").is_running
    config = h.file("/etc/salt/master.d/saltyard.conf").content_string
    assert "auto_accept: False" in config
    assert "open_mode: False" in config
    # A busy or emulated minion gets a minute to say it still runs a job (lvs1 under QEMU
    # without KVM was reported 'No minions responded' mid-orchestration with the default 10 s).
    assert "gather_job_timeout: 60" in config


def test_roles_come_from_the_master_not_from_minion_grains(cluster, converged, docker_node):
    # A minion that sets a grain claiming a role gets nothing from it: targeting is by pillar,
    # and the pillar is computed on the master from the inventory.
    node = next(n.name for n in cluster.nodes if not n.has_role("docker"))
    roles = cluster.salt([node], "pillar.get", "saltyard:roles")[node]
    assert "docker" not in roles
    cluster.salt([node], "grains.setval", "roles", '["docker"]')
    try:
        top = cluster.salt([node], "state.show_top")[node]
        assert "docker" not in top["base"], top
    finally:
        cluster.salt([node], "grains.delkey", "roles", "force=True")


# The registry VIP (pillar/sites/local.sls registry:vip:address; docs/lvs.md).
REGISTRY_VIP = "172.30.0.200"


def _addresses(role: str) -> list[str]:
    from saltyard import inventory

    return [n.address for n in inventory.load().profile(PROFILE) if n.has_role(role)]


@pytest.mark.parametrize("node", nodes_with("lvs"))
def test_lvs_role(converged, node):
    h = host(node)
    assert h.package("keepalived").is_installed and h.package("ipvsadm").is_installed
    assert h.service("keepalived").is_running and h.service("keepalived").is_enabled
    assert h.run("keepalived -t -f /etc/keepalived/keepalived.conf").rc == 0
    assert f"inet {REGISTRY_VIP}/32" in h.check_output("ip -4 -o addr show")
    # Every registry of the profile passes its health check (they may converge after lvs1).
    wanted = [f"-a -t {REGISTRY_VIP}:5000 -r {a}:5000 -g -w 1" for a in _addresses("registry")]

    def missing() -> list[str]:
        table = h.check_output("ipvsadm -S -n")
        return [line for line in wanted if line not in table]

    wait_until(lambda: not missing(), 60, 2, f"every registry in the IPVS table ({wanted})")


@pytest.mark.parametrize("node", nodes_with("registry"))
def test_registry_holds_the_vip_for_direct_routing(converged, node):
    h = host(node)
    assert f"inet {REGISTRY_VIP}/32" in h.check_output("ip -4 -o addr show dev lo")
    assert h.sysctl("net.ipv4.conf.all.arp_ignore") == 1
    assert h.sysctl("net.ipv4.conf.all.arp_announce") == 2
    assert h.service("saltyard-registry-vip").is_enabled


def test_registry_vip_answers_with_tls_through_the_director(cluster, converged):
    # The registry's certificate carries the VIP; /v2/ without credentials answers 401.
    rc, out = cluster.exec(
        "build1",
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--cacert",
            "/usr/local/share/ca-certificates/saltyard-cluster.crt",
            f"https://{REGISTRY_VIP}:5000/v2/",
        ],  # fmt: skip
        check=False,
    )
    assert (rc, out) == (0, "401"), out
