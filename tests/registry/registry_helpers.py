"""What the registry tests share besides fixtures (a unique module name: tests/ has no
packages, so ``conftest`` is not importable by name)."""

from __future__ import annotations

from dataclasses import dataclass

import requests

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
    """Every request a client's session sends, with the bytes each way (a response hook)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def hook(self, response: requests.Response, *args, **kwargs) -> None:
        request = response.request
        url = requests.utils.urlparse(request.url)
        body = request.body or b""
        self.calls.append(
            Call(
                method=request.method,
                path=url.path,
                query=url.query,
                status=response.status_code,
                sent=len(body.encode() if isinstance(body, str) else body),
                received=len(response.content or b""),
                headers=dict(request.headers),
            )
        )

    def clear(self) -> None:
        self.calls.clear()

    def summary(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls]
