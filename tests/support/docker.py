"""The host's Docker engine for the suites that run containers: one client, one task image, and
the removal of every container this session's emulators started (by their cluster label)."""

from __future__ import annotations

import ipaddress
import random
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.types

from tests.support.components import require

# The prefix of every emulator cluster name (and so container label) started in this process,
# so the session's cleanup removes exactly its own containers, also those of a failed test.
SESSION = f"pytest-{uuid.uuid4().hex[:8]}"
EMULATOR_LABEL = "saltyard.marathon-emulator"
# A tag of the local cluster's node image (Debian 12 + python3) for tasks; one per session, so
# two sessions on one machine (or one ending) never take the other's image away.
TASK_IMAGE = f"saltyard-test/task:{SESSION}"


def client() -> docker.DockerClient:
    """A client of the host's engine, which answers; else the test stops (``require``)."""
    try:
        engine = docker.from_env()
        engine.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means no usable engine
        require("Docker engine", f"no Docker engine answers ({exc}); run scripts/host-setup.sh")
    return engine


def tag_task_image(engine: docker.DockerClient, tag: str = TASK_IMAGE) -> bool:
    """Tag the node image (built once, cached by a hash of its inputs) as ``tag``; True when
    the tag was made here (so the caller removes it again)."""
    from saltyard.localcluster import image

    try:
        engine.images.get(tag)
        return False
    except docker.errors.ImageNotFound:
        engine.images.get(image.build()).tag(tag)
        return True


def remove_task_image(engine: docker.DockerClient, tag: str = TASK_IMAGE) -> None:
    engine.images.remove(tag, noprune=True)


def remove_containers(engine: docker.DockerClient, cluster_prefix: str) -> int:
    """Remove every emulator container whose cluster label starts with ``cluster_prefix``."""
    removed = 0
    for c in engine.containers.list(
        all=True, sparse=True, filters={"label": f"{EMULATOR_LABEL}.cluster"}
    ):
        if (
            (c.attrs.get("Labels") or {})
            .get(f"{EMULATOR_LABEL}.cluster", "")
            .startswith(cluster_prefix)
        ):
            c.remove(force=True)
            removed += 1
    return removed


def remove_cluster(engine: docker.DockerClient, cluster: str) -> None:
    """Remove the containers of one emulator cluster (exact name)."""
    for c in engine.containers.list(
        all=True, filters={"label": f"{EMULATOR_LABEL}.cluster={cluster}"}
    ):
        c.remove(force=True)


# ---------------------------------------------------------------------- user-defined networks

# Test networks take a /24 from here, never one that a Docker network or a route of this
# machine already uses (the local cluster's 172.30.0.0/24, Docker's 172.17.0.0/16, eth0's).
TEST_NETWORK_RANGE = ipaddress.ip_network("10.231.0.0/16")
NETWORK_LABEL = "saltyard.test-network"


def _routed_subnets() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations of this machine's routing table (/proc/net/route), default
    route excluded."""
    subnets = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000":
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = bin(int(fields[7], 16)).count("1")
        subnets.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
    return subnets


def _used_subnets(engine: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    used = _routed_subnets()
    for network in engine.networks.list():
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                subnet = ipaddress.ip_network(pool.get("Subnet") or "", strict=False)
            except ValueError:
                continue
            if subnet.version == 4:
                used.append(subnet)
    return used


def free_subnet(engine: docker.DockerClient) -> ipaddress.IPv4Network:
    """A /24 of TEST_NETWORK_RANGE that overlaps no Docker network and no route here."""
    used = _used_subnets(engine)
    candidates = list(TEST_NETWORK_RANGE.subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {TEST_NETWORK_RANGE} for a test network")


@contextmanager
def user_network(
    engine: docker.DockerClient, prefix: str = "net"
) -> Iterator[tuple[docker.models.networks.Network, ipaddress.IPv4Network]]:
    """A user-defined bridge network of its own (``docker network create``: a unique name
    under the session's, a free /24), removed on the way out: its containers (task containers
    of an app the test deleted, still stopping) get up to 20 s to go, then are disconnected."""
    name = f"{SESSION}-{prefix}-{uuid.uuid4().hex[:4]}"
    for _ in range(5):
        subnet = free_subnet(engine)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
        try:
            network = engine.networks.create(
                name, driver="bridge", ipam=ipam, labels={NETWORK_LABEL: SESSION}
            )
            break
        except docker.errors.APIError as exc:
            if "overlap" not in str(exc).lower():
                raise
            # Someone took that subnet since we looked: pick another.
    else:
        raise RuntimeError(f"could not create the test network {name}: every subnet overlapped")
    try:
        yield network, subnet
    finally:
        remove_network(network)


def remove_network(network) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            network.reload()
        except docker.errors.NotFound:
            return
        attached = list((network.attrs.get("Containers") or {}).keys())
        if not attached or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for container_id in attached:
        try:
            network.disconnect(container_id, force=True)
        except docker.errors.APIError:
            pass
    # A container that was stopping may hold its endpoint a moment after it left the network's
    # list: retry, bounded. An engine that still refuses with nothing attached shows Docker
    # 20.10's defect (moby/moby#42119: only an engine restart clears it): named, not hidden,
    # and not the test's failure.
    deadline = time.monotonic() + 15
    while True:
        try:
            network.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
            network.reload()
            if network.attrs.get("Containers"):
                if time.monotonic() > deadline:
                    raise
            elif time.monotonic() > deadline:
                warnings.warn(
                    f"left test network {network.name} behind: the engine refuses to remove it "
                    "although no container is attached (moby/moby#42119; an engine restart "
                    "clears it)",
                    stacklevel=2,
                )
                return
        time.sleep(0.5)


def remove_networks(engine: docker.DockerClient, session: str) -> None:
    """Remove the test networks a session left behind (a test killed half-way)."""
    for network in engine.networks.list(filters={"label": f"{NETWORK_LABEL}={session}"}):
        try:
            remove_network(network)
        except docker.errors.APIError:
            pass
