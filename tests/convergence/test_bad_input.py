"""Bad pillar and inventory values fail with a clear message and change nothing.

Each bad value is sent together with a harmless pillar change that a good run would apply (the
limits file's nofile value): the file must be untouched afterwards, which shows that the run
stopped before any state changed anything.
"""

from __future__ import annotations

import json

import pytest
import yaml

from saltyard.bootstrap import REPO_ON_MASTER
from tests.convergence.helpers import host
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

LIMITS = "/etc/security/limits.d/60-saltyard.conf"
DAEMON_JSON = "/etc/docker/daemon.json"
ZOO_CFG = "/etc/zookeeper/conf/zoo.cfg"
# A change a good run would make: the limits file's nofile value.
DECOY = {"base": {"limits": {"nofile": 4096}}}


def bad_highstate(cluster, node: str, pillar: dict):
    merged = json.loads(json.dumps(DECOY))
    for key, value in pillar.items():
        merged.setdefault(key, {}).update(value)
    watched = [p for p in (LIMITS, DAEMON_JSON, ZOO_CFG) if host(node).file(p).exists]
    before = {path: host(node).file(path).content_string for path in watched}
    result = cluster.highstate([node], f"pillar={json.dumps(merged)}")[node]
    after = {path: host(node).file(path).content_string for path in watched}
    assert not result.ok, result.describe()
    assert result.changed == [], result.describe()
    assert after == before, "a failed run changed files"
    return result


def test_storage_driver_aufs_is_refused(cluster, converged, docker_node):
    result = bad_highstate(cluster, docker_node, {"docker": {"storage_driver": "aufs"}})
    message = " ".join(result.failed)
    assert "'aufs'" in message and "overlay2" in message and "docker:storage_driver" in message


def test_minimum_kernel_above_running_is_refused(cluster, converged, docker_node):
    running = host(docker_node).check_output("uname -r")
    # Without the local site's kernel:boot, whose release below the minimum the render refuses
    # first (tests/unit/test_kernel_render.py): this is the running kernel's gate.
    no_boot = {"package": "", "release": ""}
    result = bad_highstate(
        cluster, docker_node, {"kernel": {"min_version": "99.1.0", "boot": no_boot}}
    )
    message = " ".join(result.failed)
    assert "99.1.0" in message and running in message, message


def test_unknown_log_driver_is_refused(cluster, converged, docker_node):
    # The in-cluster example of a render-time refusal; the others (a host sysctl in a container,
    # a ZooKeeper quorum against the ensemble, ...) are rendered on the host in
    # tests/unit/test_refusals_render.py and tests/unit/test_*_render.py.
    result = bad_highstate(cluster, docker_node, {"docker": {"log_driver": "gelf"}})
    assert any("gelf" in e for e in result.errors), result.describe()


def test_agent_attribute_change_under_a_checkpoint_is_refused(cluster, converged):
    node = next(n.name for n in cluster.nodes if n.has_role("mesos-agent"))
    h = host(node)
    checkpoint = "/var/lib/mesos/meta/slaves/latest"
    # What a Mesos agent leaves after registering: its checkpointed identity.
    cluster.exec(node, ["mkdir", "-p", checkpoint])
    try:
        result = bad_highstate(cluster, node, {"mesos": {"agent": {"attributes": {"rack": "r2"}}}})
        message = " ".join(result.failed)
        assert "rack" in message and "Incompatible agent info" in message, message
        assert h.file("/etc/mesos-slave/attributes").listdir() == ["env"]
        assert h.file(checkpoint).exists

        # With the reset flag (set by the drain orchestration) the checkpoint goes and the
        # attribute is written.
        reset = {
            "mesos": {"agent": {"attributes": {"rack": "r2"}, "reset_for_attribute_change": True}}
        }
        result = cluster.highstate([node], f"pillar={json.dumps(reset)}")[node]
        assert result.ok, result.describe()
        assert not h.file(checkpoint).exists
        assert h.file("/etc/mesos-slave/attributes/rack").content_string.strip() == "r2"
    finally:
        cluster.exec(node, ["rm", "-rf", "/var/lib/mesos/meta"])
        restored = cluster.highstate([node])[node]
        assert restored.ok, restored.describe()
    assert h.file("/etc/mesos-slave/attributes").listdir() == ["env"]


@pytest.fixture
def master_reads_test_inventory(cluster):
    """Show the master's ext_pillar another inventory for one test. A file is bind-mounted over
    the inventory path inside the master container only: the checkout it serves is never
    written, and the master needs no restart (two restarts, and every minion's re-auth after
    each, took about 170 s), since the ext_pillar reads the file at every pillar compile."""
    master = cluster.inventory.master.name
    live = f"{REPO_ON_MASTER}/salt/inventory.yaml"
    path = "/etc/salt/test-inventory.yaml"

    def write(data: dict) -> None:
        body = yaml.safe_dump(data)
        cluster.exec(master, ["sh", "-c", f"cat > {path} <<'EOF'\n{body}\nEOF"])

    write(yaml.safe_load(open(cluster.inventory.path)))
    cluster.exec(master, ["mount", "--bind", path, live])
    try:
        yield write
    finally:
        cluster.exec(master, ["umount", live])
        cluster.exec(master, ["rm", "-f", path])


def test_bad_inventory_stops_every_state_run(
    cluster, converged, docker_node, master_reads_test_inventory
):
    good = yaml.safe_load(open(cluster.inventory.path))

    unknown_role = json.loads(json.dumps(good))
    unknown_role["nodes"][1]["roles"].append("webserver")
    master_reads_test_inventory(unknown_role)
    result = bad_highstate(cluster, docker_node, {})
    assert any("webserver" in e for e in result.errors), result.describe()
    # The in-cluster example of an inventory the master refuses; the other refusals (a node
    # listed twice, addresses, environments ...) are tests/unit/test_inventory*.py.


def test_unknown_minion_is_never_accepted(cluster, converged):
    """A minion outside the inventory connects, and stays pending: no auto-accept."""
    node = next(n.name for n in cluster.nodes if n.name != cluster.inventory.master.name)
    master = cluster.inventory.master
    conf = (
        "id: rogue\n"
        f"master: {master.address}\n"
        "pki_dir: /tmp/rogue/pki\ncachedir: /tmp/rogue/cache\nsock_dir: /tmp/rogue/sock\n"
        "log_file: /tmp/rogue/minion.log\npidfile: /tmp/rogue/minion.pid\n"
    )
    cluster.exec(node, ["sh", "-c", f"mkdir -p /tmp/rogue && printf '{conf}' > /tmp/rogue/minion"])
    cluster.exec(node, ["/opt/saltyard/venv/bin/salt-minion", "-c", "/tmp/rogue", "-d"])
    try:

        def keys_if_pending() -> dict | None:
            _, out = cluster.exec(master.name, ["salt-key", "--out=json", "-L"])
            listed = json.loads(out)
            return listed if "rogue" in listed.get("minions_pre", []) else None

        keys = wait_until(
            keys_if_pending, 60, 2, "the rogue minion's key among the unaccepted ones"
        )
        assert "rogue" not in keys["minions"]
        assert cluster.salt(["rogue"], "test.ping", timeout=5) == {}
    finally:
        cluster.exec(
            node, ["sh", "-c", "kill $(cat /tmp/rogue/minion.pid); rm -rf /tmp/rogue"], check=False
        )
        cluster.exec(master.name, ["salt-key", "-y", "-d", "rogue"], check=False)


# Both services on a registry node present the node certificate from the master's cluster CA.
NODE_CERTIFICATE_FILES = [
    f"{folder}/{name}"
    for folder in ("/etc/docker/registry/tls", "/etc/docker/tls")
    for name in ("cert.pem", "key.pem")
]
# Prints how many certificates in the master's store name argv[1] (saltyard.pki reads names).
COUNT_SIGNED = """
import pathlib, sys
from cryptography import x509
from saltyard.pki import _names
certs = pathlib.Path('/etc/salt/saltyard-pki').rglob('*.crt')
print(sum(sys.argv[1] in _names(x509.load_pem_x509_certificate(p.read_bytes())) for p in certs))
"""


def test_a_vip_outside_the_cluster_network_leaves_the_certificates_alone(cluster, converged):
    """The refused VIP reaches the master's PKI ext_pillar too (a command's pillar override is
    part of the pillar it is given). It must not be signed there, and the next highstate must
    find the node certificate as it was: nothing to replace, no service to restart."""
    node = next(n.name for n in cluster.nodes if n.has_role("registry"))
    master = cluster.inventory.master.name
    bad_vip = "10.9.9.9"
    count = ["/opt/saltyard/venv/bin/python", "-c", COUNT_SIGNED, bad_vip]
    h = host(node)
    before = {path: h.file(path).content_string for path in NODE_CERTIFICATE_FILES}

    result = bad_highstate(cluster, node, {"registry": {"vip": {"address": bad_vip}}})
    message = " ".join(result.errors)
    assert f'pillar registry:vip:address "{bad_vip}" is outside the cluster network' in message

    assert cluster.exec(master, count)[1].strip() == "0", "the cluster CA signed the bad VIP"
    assert {path: h.file(path).content_string for path in NODE_CERTIFICATE_FILES} == before
    predicted = cluster.highstate([node], "test=True")[node]
    assert predicted.ok and predicted.changed == [], predicted.describe()
