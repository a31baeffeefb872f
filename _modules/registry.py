"""
Docker registry repositories, tags and manifests, through saltyard's registry client.

A thin adapter over ``saltyard.clients.registry.RegistryClient`` (Docker Registry HTTP API v2):
every function builds a client from the connection settings, calls it, and turns the client's
RegistryError into CommandExecutionError with the same message (the bad value, or the
registry's error code and message). No HTTP code lives here.

Connection settings come from ``registry:client`` (pillar, or the minion config; read with
``config.get``); ``url``, ``username``, ``password`` and ``ca_file`` given to a function
override the configured ones::

    registry:
      client:
        url: https://registry.service:5000
        username: deploy
        password: secret                       # keep it in pillar, not in the minion config
        ca_file: /etc/ssl/certs/registry-ca.pem  # the CA that signed the registry's certificate

``retag`` moves only manifests (the exact bytes, under a new tag): no layer is pulled or
pushed, and the digest does not change.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    from saltyard import inventory
    from saltyard.clients import registry as registry_client

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "registry"

_SETTINGS = ("url", "username", "password", "ca_file")


def __virtual__() -> str | tuple[bool, str]:
    if not HAS_SALTYARD:
        return (
            False,
            "registry: the saltyard package (saltyard.clients.registry) is not importable",
        )
    return __virtualname__


# ---------------------------------------------------------------------- plumbing


def _client(**overrides: Any) -> registry_client.RegistryClient:
    configured = __salt__["config.get"]("registry:client", {}) or {}
    if not isinstance(configured, dict):
        raise CommandExecutionError("registry:client must be a mapping (url, username, ...)")
    settings = {k: configured.get(k) for k in _SETTINGS}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    settings["url"] = settings["url"] or _default_url()
    if not settings["url"]:
        raise CommandExecutionError(
            "no registry URL: pass url=... or set registry:client:url in pillar"
        )
    return _call(
        registry_client.RegistryClient,
        settings["url"],
        username=settings["username"],
        password=settings["password"],
        ca_file=settings["ca_file"],
    )


def _members() -> list[dict]:
    return __salt__["config.get"]("saltyard:members:registry", []) or []


def _port() -> int:
    return int(__salt__["config.get"]("registry:port", 5000) or 5000)


def _default_url() -> str | None:
    # The registry pair's VIP on the LVS director when there is one (how the cluster's nodes
    # push and pull), else the inventory's first registry node (the registry role listens with
    # TLS on registry:port).
    vip = __salt__["config.get"]("registry:vip:address", "")
    if vip:
        return f"https://{vip}:{_port()}"
    members = _members()
    return f"https://{members[0]['name']}:{_port()}" if members else None


def url() -> str | None:
    """
    Return the registry URL this node's functions use: ``registry:client:url``, else the
    registry pair's VIP, else the inventory's first registry node (None without any).

    CLI Example:

    .. code-block:: bash

        salt build1 registry.url
    """
    configured = __salt__["config.get"]("registry:client", {}) or {}
    return (configured.get("url") if isinstance(configured, dict) else None) or _default_url()


def _call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except registry_client.RegistryError as exc:
        raise CommandExecutionError(str(exc)) from exc


# ---------------------------------------------------------------------- reading


def catalog(
    page_size: int | None = None,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> list[str]:
    """
    Return every repository in the registry (all pages, ``page_size`` names per request).

    CLI Example:

    .. code-block:: bash

        salt '*' registry.catalog
        salt '*' registry.catalog url=https://registry2.service:5000
    """
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    return _call(client.catalog, page_size=int(page_size) if page_size else None)


def tags(
    repository: str,
    page_size: int | None = None,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> list[str]:
    """
    Return the tags of ``repository``, sorted (an error if the repository does not exist).

    CLI Example:

    .. code-block:: bash

        salt '*' registry.tags team/web
    """
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    return sorted(_call(client.tags, repository, page_size=int(page_size) if page_size else None))


def digest(
    repository: str,
    reference: str,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> str:
    """
    Return the digest ``repository:reference`` points at (``sha256:...``); an error naming the
    image if it does not exist.

    CLI Example:

    .. code-block:: bash

        salt '*' registry.digest team/web 1.4.2
    """
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    return _call(client.manifest_digest, repository, str(reference))


def exists(
    repository: str,
    tag: str,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> bool:
    """
    Return True if ``repository:tag`` exists.

    CLI Example:

    .. code-block:: bash

        salt '*' registry.exists team/web stable
    """
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    return _call(client.exists, repository, str(tag))


def parse(image: str, default_repository: str | None = None) -> dict[str, str]:
    """
    Check an image reference without contacting the registry and split it: ``repo:tag`` or
    ``repo@sha256:...``, or a bare tag of ``default_repository``. Invalid names, tags and
    digests raise an error naming the bad value.

    CLI Example:

    .. code-block:: bash

        salt '*' registry.parse team/web:1.4.2
    """
    repository, reference = _call(registry_client.parse_image, image, default_repository)
    return {"repository": repository, "reference": reference}


# ---------------------------------------------------------------------- changing


def retag(
    repository: str,
    source: str,
    target: str,
    target_repository: str | None = None,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> dict[str, str]:
    """
    Point tag ``target`` at the manifest ``source`` (a tag or digest) points at, without
    pulling or pushing layers; return the image names and the (unchanged) digest.

    With ``target_repository`` the tag is created in that repository: the blobs are mounted
    from ``repository`` inside the registry (no upload).

    CLI Example:

    .. code-block:: bash

        salt '*' registry.retag team/web 1.4.2 stable
        salt '*' registry.retag team/web 1.4.2 1.4.2 target_repository=release/web
    """
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    target_repository = target_repository or repository
    moved = _call(
        client.retag, repository, str(source), str(target), target_repository=target_repository
    )
    separator = "@" if str(source).startswith("sha256:") else ":"
    return {
        "source": f"{repository}{separator}{source}",
        "target": f"{target_repository}:{target}",
        "digest": moved,
    }


def delete(
    repository: str,
    digest: str,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> bool:
    """
    Delete the manifest ``digest`` from ``repository``; every tag pointing at it goes too.
    Layers stay on disk until the registry's garbage collection runs (with the registry
    read-only). Needs ``storage.delete.enabled: true`` on the registry.

    CLI Example:

    .. code-block:: bash

        salt '*' registry.delete team/web sha256:4d44087e23a39b0bea28d56596a0dd4e...
    """
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    _call(client.delete, repository, digest)
    return True


# ---------------------------------------------------------------------- deploy checks


def _split_registry(image: str) -> tuple[str | None, str]:
    # Docker's rule: the first path component names a registry when it has a dot or a port,
    # or is localhost; otherwise the image is on Docker Hub.
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, image


def check_image(
    image: str,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> str | None:
    """
    Why ``image`` (a Docker reference as in a Marathon app, ``host:port/repo:tag``) cannot be
    deployed from the cluster registry, or None when the registry has it. The agents pull only
    from the cluster registry, so an image from anywhere else is refused too. Without a cluster
    registry (no ``registry:client:url``, no ``registry:vip:address`` and no registry node in
    the inventory) the image cannot be checked, and that is the answer (it fails closed).

    CLI Example:

    .. code-block:: bash

        salt control1 registry.check_image registry1:5000/team/web:1.4.2
    """
    client_url = url or (__salt__["config.get"]("registry:client", {}) or {}).get("url")
    client_url = client_url or _default_url()
    if not client_url:
        return (
            f"no cluster registry is configured (registry:client:url, registry:vip:address or a "
            f"registry node in the inventory): cannot check image {image!r}"
        )
    host, rest = _split_registry(str(image))
    accepted = {urllib.parse.urlsplit(client_url).netloc}
    for member in _members():
        accepted.update(f"{member[key]}:{_port()}" for key in ("name", "address"))
    if host not in accepted:
        where = f"registry {host!r}" if host else "Docker Hub"
        return (
            f"image {image!r} comes from {where}, not from the cluster registry "
            f"({', '.join(sorted(accepted))}): agents pull only from it"
        )
    repository, reference = _call(registry_client.parse_image, rest)
    client = _client(url=url, username=username, password=password, ca_file=ca_file)
    if reference.startswith("sha256:"):
        try:
            client.manifest_digest(repository, reference)
        except registry_client.RegistryError as exc:
            return str(exc)
        return None
    if not _call(client.exists, repository, reference):
        return f"image {image!r} does not exist in the cluster registry {client.base_url}"
    return None


# ---------------------------------------------------------------------- configuration checks


def vip_problem(address: Any) -> str | None:
    """
    What is wrong with ``address`` as the registry VIP, or None when nothing is (as
    ``check_image``; an empty string would read as "did not return" in the salt CLI).

    The rules (``saltyard.inventory.check_vip``, against pillar ``saltyard:cluster:network`` and
    ``saltyard:nodes``) are the ones the master's PKI ext_pillar applies before it puts the VIP
    in a registry's certificate; the registry and lvs states call this when they render, so a
    bad VIP stops them before anything changes.

    CLI Example:

    .. code-block:: bash

        salt lvs1 registry.vip_problem 172.30.0.200
    """
    network = __salt__["config.get"]("saltyard:cluster:network", {}) or {}
    nodes = __salt__["config.get"]("saltyard:nodes", []) or []
    try:
        inventory.check_vip(address, network, nodes)
    except ValueError as exc:
        return str(exc)
    return None
