"""The cluster's certificate authorities and the certificates they issue, kept on the salt-master.

Two CAs, so that holding a node certificate does not grant control of a Docker engine:

- ``cluster``: signs every node's certificate (server and client use; names: the node's name, its
  FQDN under the cluster domain, its address, and any extra names asked for). Registries, the
  Docker engines' TLS listeners and anything else that serves TLS inside the cluster present it.
- ``docker-clients``: signs only the certificates of nodes allowed to drive other nodes' Docker
  engines (the Marathon-API emulator's node in the local cluster). Engines verify clients against
  this CA alone.

Keys and certificates live in one store on the master (mode 0700, files 0600). A certificate is
issued once for each set of names it is asked for, and re-issued only within RENEW_BEFORE of
expiry, so pillar renders are stable and a second highstate changes nothing. Asking again for a
set of names issued before gives that certificate back: a one-off pillar override (a trial
``pki:extra_names``, a VIP previewed with ``test=True``) does not replace the certificate that the
normal pillar gives, so the next highstate has nothing to change. Renders can run in parallel
(one per minion), so issuing holds an exclusive lock on the store.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
CERT_LIFETIME = datetime.timedelta(days=825)
RENEW_BEFORE = datetime.timedelta(days=30)
CAS = {"cluster": "saltyard cluster CA", "docker-clients": "saltyard Docker API clients CA"}


@dataclass(frozen=True)
class Issued:
    cert: str  # PEM
    key: str  # PEM


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


class Store:
    """The CA store on the master (``/etc/salt/saltyard-pki``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def locked(self):
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.path / ".lock", "w", opener=lambda p, f: os.open(p, f, 0o600)) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ CAs

    def ca(self, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if name not in CAS:
            raise ValueError(f"unknown CA {name!r}; known: {', '.join(CAS)}")
        cert_path, key_path = self.path / f"ca-{name}.crt", self.path / f"ca-{name}.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return cert, key
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CAS[name])])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write(key_path, _key_pem(key))
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def ca_pem(self, name: str) -> str:
        cert, _ = self.ca(name)
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    # ------------------------------------------------------------------ certificates

    def issue(self, ca: str, common_name: str, names: list[str], *, server: bool) -> Issued:
        """The certificate for `common_name` with `names` from CA `ca`: issued once per set of
        names (and use), re-issued only when it nears expiry."""
        names = sorted(set(names))
        # One file pair per set of names: <ca>/<common name>/<hash of names and use>.crt
        tag = hashlib.sha256(json.dumps([names, server]).encode()).hexdigest()[:16]
        folder = self.path / ca / common_name
        folder.parent.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        cert_path, key_path = folder / f"{tag}.crt", folder / f"{tag}.key"
        self._adopt_legacy(folder, names, cert_path, key_path)
        if cert_path.exists() and key_path.exists():
            current = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if current.not_valid_after_utc - RENEW_BEFORE > _now():
                return Issued(cert_path.read_text(), key_path.read_text())
        ca_cert, ca_key = self.ca(ca)
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CERT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(_san(names)), False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(key_path, _key_pem(key))
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert_path.read_text(), key_path.read_text())

    @staticmethod
    def _adopt_legacy(folder: Path, names: list[str], cert_path: Path, key_path: Path) -> None:
        """Stores made before one-certificate-per-set-of-names kept <ca>/<common name>.crt.
        Move such a certificate into place when its names are the ones asked for: re-issuing it
        would make the first highstate after an upgrade replace the TLS files of every node and
        restart every registry and Docker engine."""
        legacy_cert = folder.with_name(f"{folder.name}.crt")
        legacy_key = folder.with_name(f"{folder.name}.key")
        if cert_path.exists() or not (legacy_cert.exists() and legacy_key.exists()):
            return
        if _names(x509.load_pem_x509_certificate(legacy_cert.read_bytes())) == names:
            os.replace(legacy_key, key_path)
            os.replace(legacy_cert, cert_path)


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return sorted(
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        + list(san.get_values_for_type(x509.DNSName))
    )
