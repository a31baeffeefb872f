"""What the registry tests share besides fixtures (a unique module name: tests/ has no
packages, so ``conftest`` is not importable by name)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from saltyard.clients import registry as rc

# kind -> (manifest type in the registry, skopeo copy flags, layout reference)
KINDS = {
    "oci": (rc.OCI_MANIFEST, [], "single"),
    "docker": (rc.DOCKER_MANIFEST, ["--format", "v2s2"], "single"),
    "ociindex": (rc.OCI_INDEX, ["--all"], "multi"),
    "dockerlist": (rc.DOCKER_MANIFEST_LIST, ["--all", "--format", "v2s2"], "multi"),
}


@dataclass
class Call:
    method: str
    path: str
    query: str
    status: int
    sent: int
    received: int
    headers: dict[str, str]


class Recorder:
    """Every request a client sends, with the bytes each way (its ``on_response`` callback)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def hook(self, response: rc.Response) -> None:
        url = urllib.parse.urlsplit(response.url)
        self.calls.append(
            Call(
                method=response.method,
                path=url.path,
                query=url.query,
                status=response.status,
                sent=len(response.request_body),
                received=len(response.content),
                headers=dict(response.request_headers),
            )
        )

    def clear(self) -> None:
        self.calls.clear()

    def summary(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls]
