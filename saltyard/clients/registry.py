"""The project's one Docker Registry client (HTTP API v2, distribution), on urllib3.

Reads the catalog and tags (following ``Link: <...>; rel="next"``), reads manifests and their
digests, retags without pulling (the manifest's exact bytes are PUT under the new tag, so the
digest stays the same and no layer moves), and deletes manifests by digest. Names, tags and
digests are checked against distribution's grammar before any request that changes something.
Every failure raises RegistryError, whose message names the bad value or the registry's error
code and message.

    client = RegistryClient("https://registry.local:5000", username="ci", password="...",
                            ca_file="/etc/ssl/registry-ca.pem")
    digest = client.retag("team/web", "1.4.2", "stable")

Why urllib3 and not requests: a retag is two small requests, and on a loopback registry
requests' own per-request work (settings merging, cookies, hooks) was about 1.7 ms of a 12 ms
retag (benchmarks/registry_retag.py, docs/benchmarks.md). urllib3 is what requests sends with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3

# The four manifest types the client reads and retags: Docker schema 2 image manifest and
# manifest list, OCI image manifest and index. Asking for all of them matters: without a list
# type in Accept, a registry answers a multi-arch tag with one platform's manifest, and without
# schema 2 it may down-convert to schema 1 (a different digest).
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
LIST_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
SCHEMA1_PREFIX = "application/vnd.docker.distribution.manifest.v1+"

# distribution's reference grammar (reference/regexp.go). A repository name here is the path
# part only: the client talks to one registry, so no domain component.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
REPOSITORY_MAX = 255
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")

# Blob kinds a registry never holds (foreign/non-distributable layers live at their `urls`).
_NOT_IN_REGISTRY = ("foreign", "nondistributable")


class RegistryError(Exception):
    """Any failure. ``status`` is the HTTP status (None when the request was never sent or not
    answered); ``code`` is the registry's first error code (``MANIFEST_UNKNOWN``, ...)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Response:
    """One request and the registry's answer, as the client's observers see it."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    content: bytes
    request_headers: Mapping[str, str] = field(default_factory=dict)
    request_body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def next_link(self) -> str | None:
        """The target of ``Link: <...>; rel="next"`` (distribution's pagination), if any."""
        for link in self.headers.get("Link", "").split(","):
            target, _, params = link.partition(";")
            rels = [p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if "=" in p]
            if "next" in rels and target.strip().startswith("<"):
                return target.strip()[1:-1]
        return None


@dataclass(frozen=True)
class Manifest:
    media_type: str
    raw: bytes
    digest: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.raw)


# ---------------------------------------------------------------------- validation


def check_repository(name: Any) -> str:
    """Return ``name`` if it is a valid repository name (e.g. ``team/web``), else raise."""
    if not isinstance(name, str) or not REPOSITORY_RE.fullmatch(name):
        raise RegistryError(
            f"invalid repository name {name!r}: lowercase path components of letters and "
            "digits, separated by '/', with single '.', '_', '__' or runs of '-' inside"
        )
    if len(name) > REPOSITORY_MAX:
        raise RegistryError(
            f"invalid repository name {name!r}: {len(name)} characters, at most {REPOSITORY_MAX}"
        )
    return name


def check_tag(tag: Any) -> str:
    """Return ``tag`` if it matches ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``, else raise."""
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise RegistryError(
            f"invalid tag {tag!r}: 1 to 128 of letters, digits, '_', '.', '-', "
            "not starting with '.' or '-'"
        )
    return tag


def check_digest(digest: Any) -> str:
    """Return ``digest`` if it is ``sha256:`` and 64 lowercase hex digits, else raise."""
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise RegistryError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex>")
    return digest


def check_reference(reference: Any) -> str:
    """A tag or a digest (what may follow ``repo:`` or ``repo@``)."""
    if isinstance(reference, str) and reference.startswith("sha256:"):
        return check_digest(reference)
    return check_tag(reference)


def parse_image(image: Any, default_repository: str | None = None) -> tuple[str, str]:
    """Split ``repo:tag`` or ``repo@sha256:...`` into (repository, reference), both checked.

    A bare word without ``:``, ``@`` or ``/`` is a tag of ``default_repository`` when one is
    given (so a state can name its source as just ``1.4.2``).
    """
    if not isinstance(image, str) or not image:
        raise RegistryError(f"invalid image reference {image!r}: expected repo:tag or repo@digest")
    if "@" in image:
        repository, _, reference = image.partition("@")
        return check_repository(repository), check_digest(reference)
    repository, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return check_repository(repository), check_tag(tag)
    if default_repository is not None and "/" not in image:
        return check_repository(default_repository), check_tag(image)
    raise RegistryError(f"invalid image reference {image!r}: no tag (expected repo:tag)")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- client


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        timeout: float | tuple[float, float] = (3.05, 30.0),
        on_response: Callable[[Response], None] | None = None,
    ):
        """``timeout``: seconds, or (connect, read). ``on_response`` sees every answer
        (tests and benchmarks record the requests with it)."""
        parts = urllib.parse.urlsplit(base_url)
        if parts.username or parts.password:
            # Credentials in the URL would end up in every error message.
            raise RegistryError(
                "registry URL must not carry credentials: pass username and password instead"
            )
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"invalid registry URL {base_url!r}: expected https://host:port")
        if ca_file and not os.path.isfile(ca_file):
            raise RegistryError(f"CA file {ca_file!r} does not exist")
        self.base_url = base_url.rstrip("/")
        self.username = username
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.timeout = urllib3.Timeout(connect=connect, read=read)
        self.on_response = on_response
        self._headers: dict[str, str] = {}
        if username:
            self._headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        # Verified always: against ca_file, else the system's CAs.
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_file}
        # The client talks to one registry, so the environment's proxy settings (HTTPS_PROXY,
        # NO_PROXY, ...) are resolved for it once, here.
        proxy = _proxy_for(parts)
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, num_pools=1, **tls)
            if proxy
            else urllib3.PoolManager(num_pools=1, **tls)
        )

    def close(self) -> None:
        """Close the kept-alive connections; the next request opens a new one."""
        self._pool.clear()

    # ------------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        missing: str | None = None,
    ) -> Response:
        """Send; raise RegistryError for anything but the ``ok`` statuses. ``missing`` is what
        a 404 means in the caller's words ("team/web:1.4 does not exist")."""
        if url.startswith("/"):
            url = self.base_url + url
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        sent = {**self._headers, **(headers or {})}
        try:
            # No retries and no redirects: a registry answers these requests itself, and a
            # failed PUT or DELETE must not be sent twice behind the caller's back.
            answer = self._pool.request(
                method,
                url,
                body=data,
                headers=sent,
                timeout=self.timeout,
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.SSLError as exc:
            raise RegistryError(
                f"TLS verification of {self.base_url} failed (is ca_file the registry's CA?): {exc}"
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise RegistryError(f"no answer from registry {self.base_url}: {exc}") from exc
        response = Response(
            method=method,
            url=url,
            status=answer.status,
            headers=answer.headers,
            content=answer.data or b"",
            request_headers=sent,
            request_body=data or b"",
        )
        if self.on_response is not None:
            self.on_response(response)
        if response.status in ok:
            return response
        raise self._error(method, url, response, missing)

    def _error(
        self, method: str, url: str, response: Response, missing: str | None
    ) -> RegistryError:
        status = response.status
        errors: list[dict[str, Any]] = []
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            errors = [e for e in body["errors"] if isinstance(e, dict)]
        code = errors[0].get("code") if errors else None
        where = f"{method} {_path_of(url)}"
        if status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                text = (
                    f"registry {self.base_url} wants token authentication ({challenge}); "
                    "this client speaks HTTP basic auth only"
                )
            elif self.username:
                text = f"wrong credentials for user {self.username!r} at {self.base_url}"
            else:
                text = f"registry {self.base_url} requires credentials and none were given"
        elif status == 403:
            text = f"user {self.username!r} may not {where} at {self.base_url}"
        elif status == 404 and missing:
            text = f"{missing} in {self.base_url}"
        elif status == 405 and method == "DELETE":
            text = (
                f"registry {self.base_url} refuses deletes ({where}): it needs "
                "storage.delete.enabled: true"
            )
        else:
            text = f"{where} at {self.base_url}: HTTP {status}"
        # A 401's detail only lists the scope that was refused: noise next to the user's name.
        details = "; ".join(_describe(e, with_detail=status != 401) for e in errors)
        if not details and status not in (401, 404) and response.text and body is None:
            details = response.text.strip()[:300]
        if details:
            text += f" ({details})"
        return RegistryError(text, status=status, code=code, errors=errors)

    def _pages(self, path: str, key: str, page_size: int | None) -> list[str]:
        """Every entry of a paginated list, following ``Link: <...>; rel="next"``."""
        items: list[str] = []
        params: dict[str, Any] | None = {"n": page_size} if page_size else None
        url = self.base_url + path
        seen = set()
        while True:
            response = self._request("GET", url, params=params, missing=_missing_repo(path))
            body = response.json() if response.content else {}
            items.extend((body or {}).get(key) or [])
            following = response.next_link()
            if not following:
                return items
            # The link is relative and already carries n and last.
            url = urllib.parse.urljoin(self.base_url + "/", following)
            params = None
            if url in seen:  # a registry repeating a page would loop forever
                raise RegistryError(f"registry {self.base_url} repeats the page {following}")
            seen.add(url)

    # ------------------------------------------------------------------ reading

    def ping(self) -> bool:
        """True when the registry answers ``/v2/`` with these credentials."""
        self._request("GET", "/v2/")
        return True

    def catalog(self, page_size: int | None = None) -> list[str]:
        """Every repository name, in the registry's order (sorted)."""
        return self._pages("/v2/_catalog", "repositories", page_size)

    def tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """Every tag of ``repository`` ([] once all were deleted)."""
        check_repository(repository)
        return self._pages(f"/v2/{repository}/tags/list", "tags", page_size)

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest's media type, exact bytes and digest (checked against the bytes)."""
        check_repository(repository)
        check_reference(reference)
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            missing=f"{_image(repository, reference)} does not exist",
        )
        raw = response.content
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type or media_type == "application/json":
            media_type = str(_json_or_empty(raw).get("mediaType") or media_type)
        if media_type.startswith(SCHEMA1_PREFIX):
            # Its digest covers the payload without the signatures, not these bytes.
            raise RegistryError(
                f"{_image(repository, reference)} is a Docker schema 1 manifest ({media_type}), "
                "which this client does not handle: push it again as schema 2 or OCI"
            )
        actual = _sha256(raw)
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != actual:
            raise RegistryError(
                f"{_image(repository, reference)}: the registry announces digest {announced} "
                f"but the manifest's bytes hash to {actual}"
            )
        if reference.startswith("sha256:") and reference != actual:
            raise RegistryError(
                f"{_image(repository, reference)}: the registry returned a manifest "
                f"whose digest is {actual}"
            )
        return Manifest(media_type=media_type, raw=raw, digest=actual)

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The digest ``reference`` points at (one HEAD request, nothing downloaded)."""
        check_repository(repository)
        check_reference(reference)
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            missing=f"{_image(repository, reference)} does not exist",
        )
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            # Not every registry answers HEAD with the digest; the bytes always tell.
            return self.manifest(repository, reference).digest
        return digest

    def blob(self, repository: str, digest: str) -> bytes:
        """The bytes of blob ``digest`` of ``repository`` (checked against the digest). For
        small blobs, such as an image's config: the whole blob is held in memory."""
        check_repository(repository)
        check_digest(digest)
        response = self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            missing=f"blob {digest} of {repository} does not exist",
        )
        actual = _sha256(response.content)
        if actual != digest:
            raise RegistryError(
                f"blob {digest} of {repository}: the registry returned bytes whose digest is "
                f"{actual}"
            )
        return response.content

    def blob_exists(self, repository: str, digest: str) -> bool:
        """True if blob ``digest`` (a layer or config) is part of ``repository``."""
        check_repository(repository)
        check_digest(digest)
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", ok=(200, 404))
        return response.status == 200

    def exists(self, repository: str, tag: str) -> bool:
        """True if ``repository:tag`` (or ``repository@digest``) exists."""
        try:
            self.manifest_digest(repository, tag)
        except RegistryError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # ------------------------------------------------------------------ changing

    def put_manifest(self, repository: str, reference: str, media_type: str, raw: bytes) -> str:
        """PUT manifest bytes as they are; return the digest the registry stored them under."""
        check_repository(repository)
        check_reference(reference)
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(
                f"{_image(repository, reference)}: unsupported manifest type {media_type!r} "
                f"(supported: {', '.join(MANIFEST_TYPES)})"
            )
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            ok=(201,),
            headers={"Content-Type": media_type},
            data=raw,
            missing=f"{repository} does not hold every blob or manifest that "
            f"{_image(repository, reference)} refers to",
        )
        expected = _sha256(raw)
        stored = response.headers.get("Docker-Content-Digest") or expected
        if stored != expected:
            raise RegistryError(
                f"{_image(repository, reference)}: the registry stored the manifest as "
                f"{stored}, not {expected} (it rewrote the bytes)"
            )
        return stored

    def retag(
        self,
        repository: str,
        source: str,
        target: str,
        *,
        target_repository: str | None = None,
    ) -> str:
        """Point ``target`` (a tag) at what ``source`` (tag or digest) points at; return the
        digest, which is the source's, unchanged.

        Only manifests move: the manifest's bytes are read and PUT again under the new tag. With
        ``target_repository`` the blobs are mounted from ``repository`` first (a registry-side
        link, no upload), and for a list/index each platform's manifest is copied by digest.
        """
        check_repository(repository)
        check_reference(source)
        check_tag(target)
        destination = check_repository(target_repository or repository)
        manifest = self.manifest(repository, source)
        if manifest.media_type not in MANIFEST_TYPES:
            raise RegistryError(
                f"{_image(repository, source)} has manifest type {manifest.media_type!r}, "
                f"which cannot be retagged as is (supported: {', '.join(MANIFEST_TYPES)})"
            )
        if destination != repository:
            self._copy_references(repository, destination, manifest)
        return self.put_manifest(destination, target, manifest.media_type, manifest.raw)

    def _copy_references(self, source: str, destination: str, manifest: Manifest) -> None:
        body = manifest.json()
        if manifest.media_type in LIST_TYPES:
            for entry in body.get("manifests") or []:
                child = self.manifest(source, check_digest(entry.get("digest")))
                self._copy_references(source, destination, child)
                self.put_manifest(destination, child.digest, child.media_type, child.raw)
            return
        blobs = [body.get("config") or {}] + list(body.get("layers") or [])
        for blob in blobs:
            if any(word in str(blob.get("mediaType", "")) for word in _NOT_IN_REGISTRY):
                continue
            self.mount_blob(source, destination, check_digest(blob.get("digest")))

    def mount_blob(self, source: str, destination: str, digest: str) -> None:
        """Make blob ``digest`` of ``source`` part of ``destination`` without uploading it."""
        check_repository(source)
        check_repository(destination)
        check_digest(digest)
        response = self._request(
            "POST",
            f"/v2/{destination}/blobs/uploads/",
            ok=(201, 202),
            params={"mount": digest, "from": source},
            data=b"",
        )
        if response.status == 202:
            # The registry could not mount and opened an upload instead: close it, do not
            # upload (that would mean moving the layer).
            location = response.headers.get("Location")
            if location:
                try:
                    self._request(
                        "DELETE", urllib.parse.urljoin(self.base_url + "/", location), ok=(204,)
                    )
                except RegistryError:
                    pass  # an abandoned upload is purged by the registry later
            raise RegistryError(
                f"blob {digest} of {source} could not be mounted into {destination} "
                f"in {self.base_url} (missing from {source}, or not readable by "
                f"{self.username!r})"
            )

    def delete(self, repository: str, digest: str) -> None:
        """Delete the manifest ``digest`` from ``repository``; every tag pointing at it goes
        too. Layers stay until the registry's garbage collection."""
        check_repository(repository)
        check_digest(digest)
        self._request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            ok=(202,),
            missing=f"{repository}@{digest} does not exist",
        )


def _proxy_for(parts: urllib.parse.SplitResult) -> str | None:
    """The proxy URL the environment sets for this registry, or None (none set, or NO_PROXY
    lists it)."""
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(parts.netloc, proxies):
        return None
    return proxies.get(parts.scheme)


def _image(repository: str, reference: str) -> str:
    return (
        f"{repository}@{reference}"
        if reference.startswith("sha256:")
        else (f"{repository}:{reference}")
    )


def _missing_repo(path: str) -> str | None:
    # /v2/<name>/tags/list: a 404 there means the repository has never been pushed.
    if path.endswith("/tags/list"):
        return f"repository {path[len('/v2/') : -len('/tags/list')]} does not exist"
    return None


def _path_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _describe(error: dict[str, Any], with_detail: bool = True) -> str:
    text = f"{error.get('code', '?')}: {error.get('message', '')}".rstrip(": ")
    detail = error.get("detail")
    if with_detail and detail not in (None, "", {}, []):
        text += f" {json.dumps(detail, sort_keys=True)}"
    return text


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
