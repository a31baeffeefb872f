"""The cluster CAs (saltyard/pki.py) and their ext_pillar (_pillar/saltyard_pki.py).

Certificates are checked the way their users check them: a real TLS handshake over loopback with
Python's ssl module (OpenSSL), server and client both verifying.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from saltyard import inventory, pki

REPO = Path(__file__).resolve().parents[2]


def _load_ext(name: str):
    spec = importlib.util.spec_from_file_location(
        f"unit_pillar_{name}", REPO / "_pillar" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pillar_for(tmp_path):
    inv_ext, pki_ext = _load_ext("saltyard_inventory"), _load_ext("saltyard_pki")
    store = tmp_path / "pki"

    def render(minion: str, extra: dict | None = None) -> dict:
        base = inv_ext.ext_pillar(minion, {}, str(REPO / "salt" / "inventory.yaml"))
        base.update(extra or {})
        return pki_ext.ext_pillar(minion, base, str(store))["pki"]

    render.store = store
    return render


def _files(tmp_path: Path, name: str, pem: str) -> str:
    path = tmp_path / name
    path.write_text(pem)
    return str(path)


def _handshake(tmp_path, server_pillar, client_cert, client_ca, server_ca, hostname):
    """Serve with the server's certificate requiring a client certificate signed by `server_ca`;
    connect with `client_cert` verifying the server against `client_ca` for `hostname`.
    Returns the server-side error, or None."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(
        _files(tmp_path, "s.crt", server_pillar["cert"]),
        _files(tmp_path, "s.key", server_pillar["key"]),
    )
    srv.verify_mode = ssl.CERT_REQUIRED
    srv.load_verify_locations(cadata=server_ca)
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.load_verify_locations(cadata=client_ca)
    if client_cert:
        cli.load_cert_chain(
            _files(tmp_path, "c.crt", client_cert["cert"]),
            _files(tmp_path, "c.key", client_cert["key"]),
        )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[Exception] = []

    def serve():
        conn, _ = listener.accept()
        try:
            with srv.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with cli.wrap_socket(raw, server_hostname=hostname) as tls:
                tls.recv(2)
    finally:
        thread.join(5)
        listener.close()
    return errors[0] if errors else None


def test_engine_accepts_only_docker_client_certificates(tmp_path, pillar_for):
    agent = pillar_for("agent-fat")
    control = pillar_for("control1")
    lb = pillar_for("lb1")
    # The emulator's node (marathon role) drives the agent's engine: both sides verify.
    assert "docker_client" in control and "docker_client" not in lb and "docker_client" not in agent
    assert (
        _handshake(
            tmp_path,
            agent["node"],
            control["docker_client"],
            control["ca"],
            agent["docker_clients_ca"],
            "172.30.0.21",
        )
        is None
    )
    # A node certificate from the cluster CA is not a Docker client certificate.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _handshake(
            tmp_path, agent["node"], lb["node"], lb["ca"], agent["docker_clients_ca"], "172.30.0.21"
        )


def test_server_name_is_checked(tmp_path, pillar_for):
    agent, control = pillar_for("agent-fat"), pillar_for("control1")
    for good in ("agent-fat", "agent-fat.saltyard.test", "172.30.0.21"):
        assert (
            _handshake(
                tmp_path,
                agent["node"],
                control["docker_client"],
                control["ca"],
                agent["docker_clients_ca"],
                good,
            )
            is None
        )
    with pytest.raises(ssl.SSLCertVerificationError, match="172.30.0.22|match"):
        _handshake(
            tmp_path,
            agent["node"],
            control["docker_client"],
            control["ca"],
            agent["docker_clients_ca"],
            "172.30.0.22",
        )


def test_stable_across_renders_and_reissued_on_new_names(pillar_for):
    first, again = pillar_for("registry1"), pillar_for("registry1")
    assert first == again
    more = pillar_for("registry1", {"pki": {"extra_names": ["registry.saltyard.test"]}})
    assert more["node"]["cert"] != first["node"]["cert"]
    assert more["ca"] == first["ca"]
    cert = x509.load_pem_x509_certificate(more["node"]["cert"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "registry.saltyard.test" in san.get_values_for_type(x509.DNSName)


def test_ca_keys_stay_on_the_master(pillar_for):
    served = repr(pillar_for("control1")) + repr(pillar_for("agent-fat"))
    for key_file in pillar_for.store.glob("ca-*.key"):
        assert key_file.read_text().strip() not in served
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pillar_for.store).st_mode) == 0o700


def test_bad_extra_names_named(pillar_for):
    with pytest.raises(ValueError, match="pki:extra_names.*'not-a-list'"):
        pillar_for("lb1", {"pki": {"extra_names": "not-a-list"}})


def test_needs_inventory_first(tmp_path):
    ext = _load_ext("saltyard_pki")
    with pytest.raises(ValueError, match="saltyard_inventory before saltyard_pki"):
        ext.ext_pillar("lb1", {}, str(tmp_path))


def test_unknown_ca_named(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        pki.Store(tmp_path).ca("nope")


def test_every_inventory_node_gets_a_certificate(pillar_for):
    inv = inventory.load(REPO / "salt" / "inventory.yaml")
    for node in inv.nodes:
        assert "BEGIN CERTIFICATE" in pillar_for(node.name)["node"]["cert"]


def test_registry_certificates_carry_the_vip(pillar_for):
    vip = {"registry": {"vip": {"address": "172.30.0.200"}}}
    cert = x509.load_pem_x509_certificate(pillar_for("registry2", vip)["node"]["cert"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "172.30.0.32",
        "172.30.0.200",
    }
    # Only the registries answer on the VIP; the director holds it but serves no TLS.
    for node in ("lvs1", "build1"):
        cert = x509.load_pem_x509_certificate(pillar_for(node, vip)["node"]["cert"].encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "172.30.0.200" not in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _sans(issued: dict) -> set[str]:
    return set(pki._names(x509.load_pem_x509_certificate(issued["node"]["cert"].encode())))


# What states/registry/vip.jinja refuses (tests/unit/test_lvs_render.py checks its messages).
@pytest.mark.parametrize(
    "bad_vip", ["10.9.9.9", "172.30.0.77", "172.30.0.140", "172.30.0.1", "registry.example"]
)
def test_a_refused_vip_is_left_out_and_reissues_nothing(pillar_for, bad_vip):
    """A command's pillar override reaches the ext_pillar too: a VIP the states refuse must
    neither be signed by the cluster CA nor replace the certificate the next highstate gets."""
    site = {"registry": {"vip": {"address": "172.30.0.200"}}}
    normal = pillar_for("registry1", site)
    refused = pillar_for("registry1", {"registry": {"vip": {"address": bad_vip}}})
    assert bad_vip not in _sans(refused)
    assert _sans(refused) == _sans(normal) - {"172.30.0.200"}
    assert pillar_for("registry1", site) == normal


def test_a_set_of_names_asked_for_before_gets_its_certificate_back(pillar_for):
    """A one-off override (here a VIP previewed with test=True) must not churn the certificate
    that the normal pillar gives: asking for the normal names again returns the same files."""
    normal = pillar_for("registry1", {"registry": {"vip": {"address": "172.30.0.200"}}})
    moved = pillar_for("registry1", {"registry": {"vip": {"address": "172.30.0.201"}}})
    assert "172.30.0.201" in _sans(moved) and "172.30.0.200" not in _sans(moved)
    assert moved["node"]["key"] != normal["node"]["key"]
    assert pillar_for("registry1", {"registry": {"vip": {"address": "172.30.0.200"}}}) == normal
    assert pillar_for("registry1", {"registry": {"vip": {"address": "172.30.0.201"}}}) == moved


def test_store_files_are_private(pillar_for):
    pillar_for("registry1")
    pillar_for("control1")  # also gets a docker-clients certificate
    paths = list(pillar_for.store.rglob("*"))
    assert any(p.suffix == ".key" and p.parent.name == "registry1" for p in paths)
    for path in paths:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_reissued_near_expiry(pillar_for, monkeypatch):
    first = pillar_for("lb1")
    soon = pki._now() + pki.CERT_LIFETIME - pki.RENEW_BEFORE + datetime.timedelta(days=1)
    monkeypatch.setattr(pki, "_now", lambda: soon)
    renewed = pillar_for("lb1")
    assert renewed["node"]["cert"] != first["node"]["cert"]
    assert _sans(renewed) == _sans(first)


def test_a_store_from_before_keeps_its_certificates(pillar_for):
    """A store of the earlier layout (<ca>/<node>.crt) upgrades without re-issuing: the nodes'
    TLS files stay as they are, so the first highstate after the upgrade restarts nothing."""
    first = pillar_for("registry1")
    folder = pillar_for.store / "cluster" / "registry1"
    (crt,) = folder.glob("*.crt")
    crt.rename(folder.with_name("registry1.crt"))
    crt.with_suffix(".key").rename(folder.with_name("registry1.key"))
    assert pillar_for("registry1") == first
    assert not folder.with_name("registry1.crt").exists()
    # Names that differ from the old certificate's get a new one, as before the upgrade.
    (crt,) = folder.glob("*.crt")
    crt.rename(folder.with_name("registry1.crt"))
    crt.with_suffix(".key").rename(folder.with_name("registry1.key"))
    more = pillar_for("registry1", {"pki": {"extra_names": ["r1.example"]}})
    assert more["node"]["cert"] != first["node"]["cert"]
    assert "r1.example" in _sans(more)
