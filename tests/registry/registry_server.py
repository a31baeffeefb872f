"""A real Docker registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1, for the
registry tests and benchmarks/registry_retag.py.

Everything it needs is made on the spot in a work directory: a throwaway CA and a server
certificate for 127.0.0.1 (``saltyard.pki``, as the cluster's are made), an htpasswd file with
one bcrypt user (``htpasswd`` from apache2-utils, with the cost the registry state ships) and a
random password, filesystem storage with deletes enabled. Nothing is read from or written to the
machine's registry configuration.

    with LocalRegistry(tmp_path) as registry:
        registry.skopeo("copy", "oci:layout:tag", registry.docker_ref("team/web:1"),
                        *registry.dest_flags())
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
from pathlib import Path

import requests
import yaml

from saltyard import pki
from tests.processes import stop_process
from tests.support.wait import free_port, wait_until

REGISTRY_BINARY = "/usr/bin/docker-registry"
# The bcrypt cost the registry state hashes users with (states/registry/defaults.yaml), so that
# tests and benchmarks see the per-request cost of the shipped configuration.
HTPASSWD_COST = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "states/registry/defaults.yaml").read_text()
)["registry"]["htpasswd_cost"]


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost, made by the cluster's own PKI code
    (saltyard/pki.py, so the certificates have the cluster's profile); returns (ca, cert, key)
    paths in ``directory``. The CA's store, with its key, sits beside ``directory``, not in it:
    skopeo and Docker read every file there."""
    with pki.Store(directory.with_name(directory.name + "-ca")).locked() as store:
        issued = store.issue("cluster", "127.0.0.1", ["127.0.0.1", "localhost"], server=True)
        ca_pem = store.ca_pem("cluster")
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / "ca.crt", directory / "server.crt", directory / "key"
    ca_path.write_text(ca_pem)
    cert_path.write_text(issued.cert)
    key_path.write_text(issued.key)
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class LocalRegistry:
    """One registry process; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, workdir: Path, username: str = "saltyard", delete_enabled: bool = True):
        self.workdir = Path(workdir)
        self.username = username
        self.delete_enabled = delete_enabled
        # Throwaway: lives only in this process and the registry's htpasswd file.
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_file = self.workdir / "registry.log"
        self.config_file = self.workdir / "config.yml"
        self.storage = self.workdir / "storage"
        # skopeo's --cert-dir and Docker's certs.d both want a directory holding ca.crt.
        self.cert_dir = self.workdir / "certs"
        self.ca_file = self.cert_dir / "ca.crt"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    def docker_ref(self, image: str, host: str | None = None) -> str:
        return f"docker://{host or self.host}/{image}"

    def src_flags(self) -> list[str]:
        return ["--src-creds", self.creds, "--src-cert-dir", str(self.cert_dir)]

    def dest_flags(self) -> list[str]:
        return ["--dest-creds", self.creds, "--dest-cert-dir", str(self.cert_dir)]

    def read_flags(self) -> list[str]:
        return ["--creds", self.creds, "--cert-dir", str(self.cert_dir)]

    def skopeo(self, *args: str, timeout: float = 120) -> str:
        """Run skopeo (no policy file needed: the test images are made here)."""
        proc = subprocess.run(
            ["skopeo", "--insecure-policy", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            shown = " ".join(a if a != self.creds else "USER:***" for a in args)
            raise AssertionError(f"skopeo {shown} failed: {proc.stderr.strip()}")
        return proc.stdout

    def raw_manifest(self, image: str) -> bytes:
        """The manifest bytes of ``repo:tag`` as skopeo sees them (not through our client)."""
        return self.skopeo("inspect", "--raw", *self.read_flags(), self.docker_ref(image)).encode()

    def digest_seen_by_skopeo(self, image: str) -> str:
        return "sha256:" + hashlib.sha256(self.raw_manifest(image)).hexdigest()

    # ------------------------------------------------------------------ process

    def _write_config(self) -> None:
        _, cert, key = make_tls(self.cert_dir)
        htpasswd = self.workdir / "htpasswd"
        # -i: the password on stdin, never on a command line; -B: bcrypt (the registry takes
        # nothing else).
        subprocess.run(
            ["htpasswd", "-B", "-C", str(HTPASSWD_COST), "-i", "-c", str(htpasswd), self.username],
            input=self.password,
            text=True,
            capture_output=True,
            check=True,
        )
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": self.delete_enabled},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(cert), "key": str(key)},
            },
            "auth": {"htpasswd": {"realm": "saltyard-test", "path": str(htpasswd)}},
        }
        self.config_file.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 20) -> LocalRegistry:
        if shutil.which(REGISTRY_BINARY) is None:
            raise RuntimeError(
                f"{REGISTRY_BINARY} is missing: run scripts/host-setup.sh (docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._write_config()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self.config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_tail()}")
            # 401 without credentials: up, TLS fine, auth on.
            r = requests.get(self.url + "/v2/", verify=str(self.ca_file), timeout=1)
            return r.status_code == 401

        try:
            wait_until(up, timeout, 0.05, "registry /v2/", ignore=(requests.RequestException,))
        except AssertionError:
            self.stop()
            raise RuntimeError(f"registry not up after {timeout}s: {self.log_tail()}") from None
        return self

    def stop(self) -> None:
        stop_process(self.proc, grace=10)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
