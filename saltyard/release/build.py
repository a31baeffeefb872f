"""The build step of a release: a git ref in, ``<registry>/<repository>:<full sha>`` pushed.

On the build node: clone the app's repository (bare), resolve the ref to a commit, and unless
the registry already has ``<repository>:<sha>`` (the same sha is never built twice: the image
that exists is the one every environment tested), build the commit's tree with the node's Docker
engine and push it. The build context is the commit itself (``git archive``), never a working
copy, so what is built is exactly what the sha names. The Dockerfile gets the base image as the
build argument ``BASE`` (nothing is pulled from the Internet; in the local cluster the base is
the node image, in the cluster registry) and the image is labelled with its source.

Refusals name the value: a ref that starts with ``-`` (it would be an option to git), a ref the
repository does not have, a repository that cannot be cloned, a build that fails (with the end
of its log), a push the registry refuses.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from saltyard.clients.registry import RegistryClient

GIT_TIMEOUT = 300
LOG_TAIL = 20  # build log lines quoted in an error


class BuildError(Exception):
    """The build step failed; the message says which value or which step."""


@dataclass(frozen=True)
class Built:
    sha: str
    image: str  # <registry>/<repository>:<sha>
    digest: str  # the manifest digest in the registry
    reused: bool  # the registry had it: nothing was built


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        timeout=GIT_TIMEOUT,
        check=False,
        # No prompt for credentials: a repository that needs them fails at once.
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )


def clone(git_url: str, into: Path) -> Path:
    """A bare clone of ``git_url`` in ``into``; BuildError naming the URL if it fails."""
    repo = into / "source.git"
    done = _git("clone", "--quiet", "--bare", "--", git_url, str(repo))
    if done.returncode != 0:
        raise BuildError(f"cannot clone {git_url}: {done.stderr.decode(errors='replace').strip()}")
    return repo


def resolve(repo: Path, ref: str, git_url: str) -> str:
    """The full sha of the commit ``ref`` (branch, tag or sha) names in the bare clone."""
    if not isinstance(ref, str) or not ref or ref.startswith("-") or "\n" in ref:
        raise BuildError(f"ref {ref!r} is not a branch, tag or commit name")
    done = _git(
        "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", cwd=repo
    )
    if done.returncode != 0:
        raise BuildError(f"ref {ref!r} does not exist in {git_url}")
    return done.stdout.decode().strip()


def resolve_ref(git_url: str, ref: str) -> str:
    """The full sha ``ref`` names in ``git_url`` (a bare clone, then rev-parse), or
    BuildError naming the ref or the URL."""
    with tempfile.TemporaryDirectory(prefix="saltyard-resolve-") as tmp:
        return resolve(clone(git_url, Path(tmp)), ref, git_url)


def _ensure_base(
    engine: docker.DockerClient, base_image: str, auth: dict | None, progress: Callable
) -> None:
    """The base image in the engine: pulled (with the registry credentials) only if missing,
    since the build itself never pulls."""
    try:
        engine.images.get(base_image)
        return
    except docker.errors.ImageNotFound:
        pass
    progress(f"pulling the base image {base_image}")
    try:
        engine.images.pull(base_image, auth_config=auth)
    except docker.errors.APIError as exc:
        raise BuildError(f"base image {base_image} cannot be pulled: {exc}") from None


def build(
    *,
    git_url: str,
    ref: str,
    repository: str,
    registry_host: str,
    registry: RegistryClient,
    engine: docker.DockerClient,
    base_image: str,
    auth: dict | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Built:
    """Build and push ``ref`` of ``git_url`` as ``<registry_host>/<repository>:<sha>``, or reuse
    the image the registry already has for that sha."""
    with tempfile.TemporaryDirectory(prefix="saltyard-build-") as tmp:
        repo = clone(git_url, Path(tmp))
        sha = resolve(repo, ref, git_url)
        image = f"{registry_host}/{repository}:{sha}"
        if registry.exists(repository, sha):
            progress(f"{image} exists in the registry: reused, not rebuilt")
            return Built(sha, image, registry.manifest_digest(repository, sha), True)
        archive = _git("archive", "--format=tar", sha, cwd=repo)
        if archive.returncode != 0:
            raise BuildError(
                f"git archive {sha} of {git_url}: {archive.stderr.decode(errors='replace')}"
            )
    _ensure_base(engine, base_image, auth, progress)
    progress(f"building {image} from {git_url} at {ref} ({sha}) on {base_image}")
    try:
        engine.images.build(
            fileobj=io.BytesIO(archive.stdout),
            custom_context=True,
            tag=image,
            buildargs={"BASE": base_image},
            labels={
                "org.opencontainers.image.revision": sha,
                "org.opencontainers.image.source": git_url,
            },
            pull=False,
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        lines = [
            str(entry.get("stream") or entry.get("error") or "").rstrip() for entry in exc.build_log
        ]
        tail = "\n".join(line for line in lines if line)[-4000:].splitlines()[-LOG_TAIL:]
        raise BuildError(
            f"docker build of {git_url} at {sha} failed: {exc.msg}\n" + "\n".join(tail)
        ) from None
    except docker.errors.APIError as exc:
        raise BuildError(f"docker build of {git_url} at {sha}: {exc}") from None
    progress(f"pushing {image}")
    for line in engine.images.push(
        f"{registry_host}/{repository}", tag=sha, stream=True, decode=True, auth_config=auth
    ):
        if "error" in line:
            raise BuildError(f"push of {image} refused: {line.get('error')}")
    digest = registry.manifest_digest(repository, sha)
    progress(f"pushed {image} ({digest})")
    return Built(sha, image, digest, False)
