"""
The build step of a release, on the build node: a git ref of an application's repository in,
``<registry>/<repository>:<full sha>`` pushed to the cluster registry (or found there).

A thin adapter over ``saltyard.release.build`` (docs/release.md): the registry is the one this
node's ``registry`` module uses (the VIP, as the build node's push user), the engine is the
node's own Docker engine. The release orchestration calls it on the build node::

    salt build1 release_build.image git://172.30.0.10/hello.git main saltyard/hello \\
        172.30.0.200:5000/saltyard/base:bookworm

A sha the registry already has is reused, never rebuilt. Every refusal (a ref the repository
lacks, a repository that cannot be cloned, a failed build with the end of its log, a refused
push) is a CommandExecutionError whose message names the value.
"""

from __future__ import annotations

import logging
import urllib.parse

from salt.exceptions import CommandExecutionError

try:
    import docker

    from saltyard.release import build

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "release_build"

log = logging.getLogger(__name__)


def __virtual__():
    if not HAS_SALTYARD:
        return False, "release_build: the saltyard package is not importable by the minion"
    return __virtualname__


class _Registry:
    """The registry as ``build.build`` asks it, through this node's ``registry`` module: one
    registry client, with the node's own connection settings."""

    def exists(self, repository: str, tag: str) -> bool:
        return __salt__["registry.exists"](repository, tag)

    def manifest_digest(self, repository: str, reference: str) -> str:
        return __salt__["registry.digest"](repository, reference)


def _auth() -> dict | None:
    client = __salt__["config.get"]("registry:client", {}) or {}
    if client.get("username") and client.get("password"):
        return {"username": client["username"], "password": client["password"]}
    return None


def image(git_url: str, ref: str, repository: str, base_image: str) -> dict:
    """
    Build ``ref`` of ``git_url`` with the node's engine (the Dockerfile's ``BASE`` is
    ``base_image``, pulled from the cluster registry if the engine lacks it) and push it as
    ``<registry>/<repository>:<full sha>``; or reuse that image if the registry has it. Returns
    ``sha``, ``image``, ``digest``, ``reused`` and the ``progress`` lines.

    CLI Example:

    .. code-block:: bash

        salt build1 release_build.image git://172.30.0.10/hello.git main saltyard/hello base:1
    """
    registry_url = __salt__["registry.url"]()
    if not registry_url:
        raise CommandExecutionError("no cluster registry: set registry:client:url in pillar")
    registry_host = urllib.parse.urlsplit(registry_url).netloc
    auth = _auth()
    engine = docker.from_env(timeout=600)
    progress: list[str] = []

    def note(line: str) -> None:
        log.info("release_build: %s", line)
        progress.append(line)

    try:
        built = build.build(
            git_url=git_url,
            ref=str(ref),
            repository=repository,
            registry_host=registry_host,
            registry=_Registry(),
            engine=engine,
            base_image=base_image,
            auth=auth,
            progress=note,
        )
    except build.BuildError as exc:
        raise CommandExecutionError(str(exc)) from None
    finally:
        engine.close()
    return {
        "sha": built.sha,
        "image": built.image,
        "digest": built.digest,
        "reused": built.reused,
        "progress": progress,
    }


def resolve(git_url: str, ref: str) -> str:
    """
    The full sha that ``ref`` (a branch, tag or commit) names in ``git_url``; an error naming
    the ref when the repository lacks it. The release's test mode asks it what a build would
    build.

    CLI Example:

    .. code-block:: bash

        salt build1 release_build.resolve git://172.30.0.10/hello.git main
    """
    try:
        return build.resolve_ref(git_url, str(ref))
    except build.BuildError as exc:
        raise CommandExecutionError(str(exc)) from None
