"""Benchmark: promoting an image tag through the registry client vs through a Docker engine.

    .venv/bin/python benchmarks/registry_retag.py [--size-mb 50] [--output FILE]

Starts its own registry on 127.0.0.1 (tests/registry/registry_server.py: TLS with a throwaway CA,
htpasswd with the bcrypt cost the registry state ships, deletes enabled), pushes one image with a
single layer of random bytes (so it does not compress) and then times, from a cold start each
time:

(a) ``RegistryClient.retag``: a new client (new TLS connection), GET the manifest, PUT the same
    bytes under a new tag;
(b) ``docker pull`` + ``docker tag`` + ``docker push`` through the host's Docker engine, the
    image removed from the engine before each run.

Times are taken talking to the registry directly. Bytes moved are counted in one more run of
each through a TCP proxy in front of the registry: the bytes each way on the wire, TLS
included, as the registry sees them (a proxy in the timed runs would slow both paths by its
own copying). For (a) the payload the client sent and received (HTTP bodies)
is given too (from the client's ``on_response`` callback).

The engine needs the CA in /etc/docker/certs.d/127.0.0.1:PORT/ca.crt and a login; the login
goes to a throwaway ``--config`` directory, and the CA directory, the images and the registry
are removed at the end, also on failure. Goal (issue 5): (b)/(a) >= 50.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.registry, tests.support

from saltyard.clients.registry import RegistryClient, Response  # noqa: E402
from tests.registry.oci_layout import OciLayout  # noqa: E402
from tests.registry.registry_server import HTPASSWD_COST, LocalRegistry  # noqa: E402

CERTS_D = Path("/etc/docker/certs.d")
IMAGE = "bench/app"


class CountingProxy:
    """Forwards 127.0.0.1:<port> to the registry and counts the bytes each way."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.to_registry = 0
        self.from_registry = 0
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.to_registry = self.from_registry = 0

    def totals(self) -> tuple[int, int]:
        with self.lock:
            return self.to_registry, self.from_registry

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            # Without it, Nagle's algorithm against delayed ACKs adds ~40 ms to every small
            # request/answer exchange: the proxy would slow (a) far more than (b).
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upwards: bool) -> None:
        try:
            while chunk := src.recv(1 << 16):
                dst.sendall(chunk)
                with self.lock:
                    if upwards:
                        self.to_registry += len(chunk)
                    else:
                        self.from_registry += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closing = True
        self.listener.close()


def run(cmd: list[str], **kwargs) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ...: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def remove_images(refs: list[str]) -> None:
    for ref in dict.fromkeys(refs):
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


def mb(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e5 else f"{count / 1e3:.1f} kB"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=50, help="size of the random layer")
    parser.add_argument("--repeat", type=int, default=30, help="timed client retags")
    parser.add_argument("--docker-repeat", type=int, default=5, help="timed docker runs")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    args = parser.parse_args()

    engine = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if engine.returncode != 0:
        print("no Docker engine: run scripts/host-setup.sh first", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="saltyard-bench-registry-"))
    registry = LocalRegistry(work / "registry")
    proxy: CountingProxy | None = None
    cert_dirs: list[Path] = []
    made_certs_d = not CERTS_D.exists()
    docker = ["docker", "--config", str(work / "docker-config")]  # the login stays in `work`
    pulled: list[str] = []
    serial = iter(range(1_000_000))
    try:
        registry.start()
        proxy = CountingProxy(registry.port)
        # Times are taken talking to the registry directly (the proxy's copying would slow
        # both paths); bytes in one more run of each through the proxy. The registry's
        # certificate holds 127.0.0.1, so it is valid on either port.
        direct, counted = registry.host, f"127.0.0.1:{proxy.port}"

        # The image: random bytes do not compress, so the layer is as big as asked.
        layout = OciLayout(work / "layout")
        size = int(args.size_mb * 1e6)
        desc = layout.add_image({"payload.bin": os.urandom(size)}, compresslevel=1)
        source = layout.tag("bench", desc)
        blob_bytes = sum(p.stat().st_size for p in (work / "layout" / "blobs").rglob("*"))
        registry.skopeo(
            "copy", "--quiet", "--format", "v2s2", *registry.dest_flags(), source,
            registry.docker_ref(f"{IMAGE}:v1"),
        )  # fmt: skip

        def client(host: str, on_response=None) -> RegistryClient:
            return RegistryClient(
                f"https://{host}",
                username=registry.username,
                password=registry.password,
                ca_file=str(registry.ca_file),
                on_response=on_response,
            )

        original = client(direct).manifest_digest(IMAGE, "v1")

        def retag_once(host: str) -> dict:
            """(a): a new client (new connection, as a fresh salt-call would have)."""
            bodies = [0]

            def count(response: Response) -> None:
                bodies[0] += len(response.request_body) + len(response.content)

            start = time.monotonic()
            digest = client(host, count).retag(IMAGE, "v1", f"client-{next(serial)}")
            return {
                "seconds": time.monotonic() - start,
                "bodies": bodies[0],
                "kept": digest == original,
            }

        for host in (direct, counted):
            cert_dir = CERTS_D / host
            cert_dirs.append(cert_dir)
            cert_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(registry.ca_file, cert_dir / "ca.crt")
            run(
                [*docker, "login", "-u", registry.username, "--password-stdin", host],
                input=registry.password,
            )

        def docker_once(host: str) -> dict:
            """(b): pull (the engine holds no copy), tag, push."""
            src, dst = f"{host}/{IMAGE}:v1", f"{host}/{IMAGE}:docker-{next(serial)}"
            # Every earlier tag too: one left behind keeps the layer in the engine, and the
            # pull would fetch only the manifest.
            remove_images(pulled)
            pulled.extend([src, dst])
            start = time.monotonic()
            run([*docker, "pull", "-q", src])
            pulled_at = time.monotonic()
            run([*docker, "tag", src, dst])
            run([*docker, "push", "-q", dst])
            end = time.monotonic()
            tag = dst.rsplit(":", 1)[1]
            kept = client(direct).manifest_digest(IMAGE, tag) == original
            return {"seconds": end - start, "pull": pulled_at - start, "kept": kept}

        # One untimed run of each first: the first TLS handshakes and the registry's first
        # reads of a repository are not what a promotion costs.
        retag_once(direct)
        docker_once(direct)
        a_runs = [retag_once(direct) for _ in range(args.repeat)]
        b_runs = [docker_once(direct) for _ in range(args.docker_repeat)]
        proxy.reset()
        a_counted = retag_once(counted)
        a_wire = sum(proxy.totals())
        proxy.reset()
        b_counted = docker_once(counted)
        b_wire = sum(proxy.totals())
    finally:
        remove_images(pulled)
        for cert_dir in cert_dirs:
            shutil.rmtree(cert_dir, ignore_errors=True)
        if made_certs_d and CERTS_D.exists() and not any(CERTS_D.iterdir()):
            CERTS_D.rmdir()
        if proxy is not None:
            proxy.close()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)

    a_time = statistics.median(r["seconds"] for r in a_runs)
    b_time = statistics.median(r["seconds"] for r in b_runs)
    b_pull = statistics.median(r["pull"] for r in b_runs)
    ratio = b_time / a_time
    kept_a = all(r["kept"] for r in [*a_runs, a_counted])
    kept_b = all(r["kept"] for r in [*b_runs, b_counted])
    lines = [
        f"Measured {datetime.date.today()} on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} cores) with `.venv/bin/python benchmarks/registry_retag.py "
        f"--size-mb {args.size_mb:g}`: a registry (distribution 2.8, TLS, htpasswd bcrypt "
        f"cost {HTPASSWD_COST}, as states/registry ships) on 127.0.0.1, an image with one "
        "layer of random bytes "
        f"({mb(blob_bytes)} of blobs), Docker engine {docker_version()}.",
        "",
        "| promotion | timed runs | median | min | max | bytes on the wire | digest kept |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| (a) RegistryClient.retag | {len(a_runs)} | {a_time * 1000:.1f} ms "
        f"| {min(r['seconds'] for r in a_runs) * 1000:.1f} ms "
        f"| {max(r['seconds'] for r in a_runs) * 1000:.1f} ms "
        f"| {mb(a_wire)} (HTTP bodies {mb(a_counted['bodies'])}) | {kept_a} |",
        f"| (b) docker pull + tag + push | {len(b_runs)} | {b_time:.2f} s "
        f"| {min(r['seconds'] for r in b_runs):.2f} s "
        f"| {max(r['seconds'] for r in b_runs):.2f} s "
        f"| {mb(b_wire)} | {kept_b} |",
        "",
        f"Time ratio (b)/(a): {ratio:.0f}x (the pull alone: {b_pull:.2f} s); bytes ratio: "
        f"{b_wire / a_wire:.0f}x. Goal >= 50x: {'met' if ratio >= 50 else 'NOT met'}.",
        "",
        "Each run starts cold: a new client and TLS connection for (a); for (b) the image is "
        "removed from the engine first. One untimed warm-up run of each. Times: straight to "
        "the registry. Bytes: one more run "
        "of each through a TCP proxy in front of the registry, both directions, TLS records "
        "included; HTTP bodies from the client's on_response callback.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write("# Registry retag benchmark\n\n" + report + "\n")
    return 0


def docker_version() -> str:
    try:
        return run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    except RuntimeError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
