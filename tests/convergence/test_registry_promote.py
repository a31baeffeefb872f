"""The build node promotes: `salt build1 registry.retag REPO 1 vN` works with the credentials
its roles give its registry module (push), and the new tag has the same digest."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.cluster


def test_build_node_retags_with_its_own_credentials(cluster, converged, registry_image):
    build = next(n.name for n in cluster.nodes if n.has_role("build"))
    assert cluster.pillar(build, "registry:client:username") == "push"
    repository, tag = registry_image.split("/", 1)[1].rsplit(":", 1)
    release = f"v{int(time.time())}"
    retagged = cluster.salt([build], "registry.retag", repository, tag, release)[build]
    assert isinstance(retagged, dict), retagged  # an error comes back as a string
    source = cluster.salt([build], "registry.digest", repository, tag)[build]
    target = cluster.salt([build], "registry.digest", repository, release)[build]
    assert source.startswith("sha256:") and target == source, (source, target)
