"""tinyweb: a task image of one static Go binary (main.go here), for the local cluster's tests.

The cluster's usual task image (Debian, about 400 MB) takes minutes to unpack on an emulated
(QEMU) VM agent; this one is a few MB ``FROM scratch``. The server drains on SIGTERM the way
docs/lb.md asks of applications (main.go says how).

``image(engine)`` builds ``saltyard-test/tinyweb:<hash>`` once per engine, where the hash covers
every input of the build, so a second test or a second session finds it and builds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

SOURCE = Path(__file__).resolve().parent
REPOSITORY = "saltyard-test/tinyweb"
# Two pytest processes (xdist, or two sessions on one machine) may ask at once: one builds, the
# other waits and then finds the image.
LOCK = Path("/var/cache/saltyard/tinyweb-image.lock")
# A static binary runs on scratch: no libc (CGO_ENABLED=0), no paths of this machine in it
# (-trimpath), no symbol tables (-s -w: smaller, and nobody debugs a test task).
GO_BUILD = ("go", "build", "-trimpath", "-ldflags=-s -w", "-o")
DOCKERFILE = """\
FROM scratch
COPY tinyweb /tinyweb
EXPOSE 8080
ENTRYPOINT ["/tinyweb"]
"""
# Bump when the build changes in a way the inputs above do not show.
RECIPE_VERSION = 1


class GoMissing(RuntimeError):
    """No ``go`` on PATH: a test turns this into a missing component (tests/support/components)."""


def image_tag(goarch: str = "amd64") -> str:
    digest = hashlib.sha256()
    for part in (
        (SOURCE / "main.go").read_bytes(),
        (SOURCE / "go.mod").read_bytes(),
        " ".join(GO_BUILD).encode(),
        DOCKERFILE.encode(),
        f"recipe {RECIPE_VERSION} goarch {goarch}".encode(),
    ):
        # Length-prefixed, so moving bytes from one input to the next changes the hash.
        digest.update(len(part).to_bytes(8, "big") + part)
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def image(engine: docker.DockerClient) -> str:
    """The tag of the tinyweb image in ``engine``, built first unless it is there already.

    RuntimeError when main.go does not build (with go's output); GoMissing, a RuntimeError,
    when ``go`` is not installed."""
    # The engine's architecture, not this machine's: DOCKER_HOST may point elsewhere.
    goarch = engine.version().get("Arch") or "amd64"
    tag = image_tag(goarch)
    if _exists(engine, tag):
        return tag
    with _locked():
        # Another process may have built it while this one waited for the lock.
        if not _exists(engine, tag):
            _build(engine, tag, goarch)
    return tag


def _exists(engine: docker.DockerClient, tag: str) -> bool:
    try:
        engine.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@contextmanager
def _locked() -> Iterator[None]:
    try:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = open(LOCK, "a")  # noqa: SIM115 - closed below
    except PermissionError:
        # A developer without root can neither create /var/cache/saltyard nor open root's lock
        # there; the processes of one user still meet at one path in the temporary directory.
        lock = open(Path(tempfile.gettempdir(), f"saltyard-{LOCK.name}"), "a")  # noqa: SIM115
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _build(engine: docker.DockerClient, tag: str, goarch: str) -> None:
    go = shutil.which("go")
    if not go:
        raise GoMissing(
            "go is not installed (golang-go, or a toolchain on PATH): the tinyweb test image "
            "is built from tests/support/tinyweb/main.go"
        )
    env = dict(
        os.environ,
        CGO_ENABLED="0",
        GOOS="linux",
        GOARCH=goarch,
        # The build is the same on every machine: no go.work of a parent directory, no flags
        # of the caller's environment, no toolchain download (the module needs no newer Go).
        GOWORK="off",
        GOFLAGS="",
        GOTOOLCHAIN="local",
    )
    with tempfile.TemporaryDirectory(prefix="saltyard-tinyweb-") as tmp:
        built = subprocess.run(
            [go, *GO_BUILD[1:], str(Path(tmp, "tinyweb")), "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise RuntimeError(
                f"go build of {SOURCE} failed (exit {built.returncode}):\n"
                f"{built.stdout}{built.stderr}".rstrip()
            )
        Path(tmp, "Dockerfile").write_text(DOCKERFILE)
        engine.images.build(path=tmp, tag=tag, rm=True, forcerm=True)
