"""Tiny OCI images written by hand into an OCI image layout (no registry, no pull), for skopeo
to push: ``skopeo copy oci:DIR:NAME docker://...``.

An image is one gzipped tar layer plus a config whose ``rootfs.diff_ids`` names the layer's
uncompressed digest (Docker checks that on pull). ``add_index`` groups images into an OCI index,
which ``skopeo copy --all`` pushes as an index (or, with ``--format v2s2``, a Docker list).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes]) -> bytes:
    """A reproducible tar: fixed owner, mode and time, so equal input gives equal digests."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class OciLayout:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.refs: list[dict[str, Any]] = []
        self._write_index()

    def add_blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = digest_of(data)
        (self.root / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_image(
        self, files: dict[str, bytes], architecture: str = "amd64", compresslevel: int = 6
    ) -> dict[str, Any]:
        """One single-layer image; returns the manifest's descriptor (with its platform)."""
        layer = tar_of(files)
        # mtime=0: the same files always give the same compressed layer (and digest).
        compressed = gzip.compress(layer, compresslevel=compresslevel, mtime=0)
        layer_desc = self.add_blob(compressed, OCI_LAYER_GZIP)
        config = {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
        }
        config_desc = self.add_blob(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [layer_desc],
        }
        desc = self.add_blob(json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST)
        desc["platform"] = {"architecture": architecture, "os": "linux"}
        return desc

    def add_index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.add_blob(json.dumps(index, sort_keys=True).encode(), OCI_INDEX)

    def tag(self, name: str, descriptor: dict[str, Any]) -> str:
        """Name ``descriptor`` in the layout's index.json: ``oci:ROOT:name`` then finds it."""
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {REF_NAME: name}
        self.refs = [r for r in self.refs if r["annotations"][REF_NAME] != name] + [entry]
        self._write_index()
        return f"oci:{self.root}:{name}"

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.root / "index.json").write_text(json.dumps(index, sort_keys=True))
