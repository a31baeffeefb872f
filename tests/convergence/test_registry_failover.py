"""Failover of the registry pair behind the LVS director: with one registry stopped, pulls
through the VIP succeed again within the health-check interval (docs/lvs.md), and the stopped
registry is put back in the virtual server once it answers again."""

from __future__ import annotations

import pytest

from saltyard.clients.registry import RegistryClient
from saltyard.localcluster.failover import measure
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

# delay_loop + connect_timeout + retry * (delay_before_retry + connect_timeout) with the lvs
# defaults is 5 s; allow for a slow, loaded CI machine on top.
BOUND = 15.0


def test_pulls_through_the_vip_survive_a_stopped_registry(
    cluster, converged, registry_image, tmp_path
):
    build = next(n.name for n in cluster.nodes if n.has_role("build"))
    lvs = next(n.name for n in cluster.nodes if n.has_role("lvs"))
    registries = [n for n in cluster.nodes if n.has_role("registry")]
    ca = tmp_path / "ca.pem"
    ca.write_text(cluster.pillar(build, "pki:ca"))
    # The agents' pull user (its password is served to the registry nodes and the pullers).
    password = cluster.pillar(registries[0].name, "registry:users:pull")
    assert password and "*" not in password
    vip, path = registry_image.split("/", 1)
    repository, tag = path.rsplit(":", 1)
    client = RegistryClient(f"https://{vip}", username="pull", password=password, ca_file=str(ca))

    for registry in registries:
        result = measure(cluster, registry.name, client, repository, tag)
        assert result.recovered_after <= BOUND, result
        # The stopped registry comes back into the virtual server once its check passes.
        wanted = f"-r {registry.address}:5000"
        wait_until(
            lambda w=wanted: w in cluster.exec(lvs, ["ipvsadm", "-S", "-n"])[1],
            BOUND,
            1,
            f"{registry.name} back behind the VIP",
        )
