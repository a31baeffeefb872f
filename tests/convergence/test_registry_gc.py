"""orch.registry_gc: the pair goes read-only in turn, the shared storage is collected, both come
back; pulls through the VIP on the LVS director keep working throughout, and every tag pushed
before still resolves after."""

from __future__ import annotations

import json
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


def orch_steps(text: str) -> dict[str, dict]:
    """{state id: its result} from `salt-run --out=json state.orchestrate` output."""

    def find(value):
        if isinstance(value, dict):
            if value and all("_|-" in k for k in value):
                return value
            for child in value.values():
                found = find(child)
                if found is not None:
                    return found
        return None

    # salt-run prints a failed salt.function's return (Python repr) and warnings around the
    # JSON document: take the first JSON document, at the start of a line, that holds states.
    decoder = json.JSONDecoder()
    steps = None
    for line_start in [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]:
        if text.startswith("{", line_start):
            try:
                steps = find(decoder.raw_decode(text, line_start)[0])
            except json.JSONDecodeError:
                continue
            if steps is not None:
                break
    assert steps is not None, text
    return {key.split("_|-")[1]: result for key, result in steps.items()}


# The collector runs `docker-registry garbage-collect` through PATH; this one, earlier in PATH
# than Debian's, makes the collection fail for real and passes everything else through.
FAILING_GC = """#!/bin/sh
if [ "$1" = garbage-collect ]; then
    echo "saltyard test: injected garbage-collect failure" >&2
    exit 3
fi
exec /usr/bin/docker-registry "$@"
"""


def test_a_failed_collection_puts_both_registries_back_in_read_write_and_in_service(
    cluster, converged, registry_image, tmp_path
):
    registries = [n for n in cluster.nodes if n.has_role("registry")]
    collector = registries[0].name
    director = next(n.name for n in cluster.nodes if n.has_role("lvs"))
    vip = registry_image.split("/", 1)[0].split(":")[0]
    build = next(n.name for n in cluster.nodes if n.has_role("build"))
    ca = tmp_path / "ca.pem"
    ca.write_text(cluster.pillar(build, "pki:ca"))
    password = cluster.pillar(build, "registry:users:push")
    repo, tag = registry_image.split("/", 1)[1].rsplit(":", 1)

    cluster.exec(
        collector,
        [
            "sh",
            "-c",
            f"cat > /usr/local/bin/docker-registry <<'EOF'\n{FAILING_GC}EOF\n"
            "chmod 0755 /usr/local/bin/docker-registry",
        ],
    )
    master = cluster.inventory.master.name
    try:
        code, out = cluster.exec(
            master, ["salt-run", "--out=json", "state.orchestrate", "orch.registry_gc"], check=False
        )
    finally:
        cluster.exec(collector, ["rm", "-f", "/usr/local/bin/docker-registry"])
    assert code != 0, out
    steps = orch_steps(out)
    assert steps["collect"]["result"] is False, steps["collect"]
    assert "injected garbage-collect failure" in json.dumps(steps["collect"]), steps["collect"]
    # The normal way back did not run; the restore steps and their gates did, in turn.
    for r in registries:
        assert steps[f"read-write-{r.name}"]["result"] is False, steps[f"read-write-{r.name}"]
        for step in (f"restore-{r.name}", f"ready-restore-{r.name}-on-{director}"):
            assert steps[step]["result"] is True, (step, steps[step])
    order = sorted(steps, key=lambda s: steps[s].get("__run_num__", 0))
    assert order.index(f"ready-restore-{registries[0].name}-on-{director}") < order.index(
        f"restore-{registries[1].name}"
    ), order

    # Both are back in read-write, in the director's table, and take a push (a retag is a
    # manifest PUT, which a read-only registry refuses).
    table = cluster.salt([director], "ipvs.service", vip, "5000")[director]
    assert {(s["address"], s["weight"] > 0) for s in table["servers"]} == {
        (r.address, True) for r in registries
    }, table
    for r in registries:
        config = yaml.safe_load(cluster.exec(r.name, ["cat", "/etc/docker/registry/config.yml"])[1])
        assert config["storage"]["maintenance"]["readonly"]["enabled"] is False, config
        client = RegistryClient(
            f"https://{r.address}:5000", username="push", password=password, ca_file=str(ca)
        )
        assert client.retag(repo, tag, f"after-failed-gc-{r.name}")
