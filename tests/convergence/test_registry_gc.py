"""orch.registry_gc: the pair goes read-only in turn, the shared storage is collected, both come
back; pulls through the VIP on the LVS director keep working throughout, and every tag pushed
before still resolves after."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from saltyard.clients.registry import RegistryClient
from saltyard.localcluster.failover import pull_once

pytestmark = pytest.mark.cluster


def test_gc_frees_deleted_blobs_and_keeps_serving(cluster, converged, registry_image, tmp_path):
    build = next(n.name for n in cluster.nodes if n.has_role("build"))
    registries = [n for n in cluster.nodes if n.has_role("registry")]
    ca = tmp_path / "ca.pem"
    ca.write_text(cluster.pillar(build, "pki:ca"))
    password = cluster.pillar(build, "registry:users:push")
    clients = [
        RegistryClient(
            f"https://{r.address}:5000", username="push", password=password, ca_file=str(ca)
        )
        for r in registries
    ]
    vip = RegistryClient(
        f"https://{registry_image.split('/', 1)[0]}",
        username="push",
        password=password,
        ca_file=str(ca),
    )
    repo, tag = registry_image.split("/", 1)[1].rsplit(":", 1)
    kept = clients[0].retag(repo, tag, "gc-keep")
    before = {t: clients[0].manifest_digest(repo, t) for t in clients[0].tags(repo)}

    # A throwaway image with a layer of its own, pushed, then its manifest deleted.
    junk = f"{registries[0].name}:5000/saltyard-test/junk:1"
    cluster.exec(
        build, ["sh", "-c", f"tar -c /etc/hostname /etc/machine-id | docker import - {junk}"]
    )
    code, _ = cluster.exec(
        build,
        [
            "sh",
            "-c",
            f"echo '{password}' | docker login -u push --password-stdin "
            f"{registries[0].name}:5000 >/dev/null && docker push -q {junk}; "
            f"docker logout {registries[0].name}:5000 >/dev/null",
        ],
        check=False,
    )
    assert code == 0
    manifest = clients[0].manifest("saltyard-test/junk", "1").json()
    layer = manifest["layers"][0]["digest"]
    clients[0].delete("saltyard-test/junk", clients[0].manifest_digest("saltyard-test/junk", "1"))
    assert clients[0].blob_exists("saltyard-test/junk", layer)

    # A reader through the VIP for the whole run: the manifest and its config blob, as a pull
    # starts. A registry restarting (its configuration changes) may fail a request; the pull
    # client retries once, as docker does, so only two failures in a row count as a failed pull.
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def read():
        while not stop.is_set():
            errors = []
            for _ in range(2):
                try:
                    assert pull_once(vip, repo, tag) == before[tag]
                    served[0] += 1
                    break
                except Exception as exc:  # any failure of a pull through the VIP
                    errors.append(repr(exc))
                    time.sleep(0.5)
            else:
                failures.append("; ".join(errors))
            time.sleep(0.2)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    master = cluster.inventory.master.name
    try:
        code, out = cluster.exec(
            master, ["salt-run", "--out=json", "state.orchestrate", "orch.registry_gc"], check=False
        )
    finally:
        stop.set()
        reader.join(10)
    assert code == 0, out
    assert not failures, failures[:5]
    assert served[0] > 10
    # The deleted image's layer is gone; every tag from before resolves to the same digest.
    assert not clients[0].blob_exists("saltyard-test/junk", layer)
    for client in clients:
        assert {t: client.manifest_digest(repo, t) for t in before} == before
    assert kept
    # Both accept pushes again.
    for r in registries:
        config = yaml.safe_load(cluster.exec(r.name, ["cat", "/etc/docker/registry/config.yml"])[1])
        assert config["storage"]["maintenance"]["readonly"]["enabled"] is False, config
