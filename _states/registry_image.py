"""
Keep a registry tag pointing at the same manifest as another tag (promotion without pulling).

Works through saltyard's ``registry`` execution module (``_modules/registry.py``), which reads
the connection from ``registry:client`` in pillar (url, username, password, ca_file).

.. code-block:: yaml

    team/web:stable:
      registry_image.tagged:
        - source: team/web:1.4.2      # or just 1.4.2 (same repository), or team/web@sha256:...

    release/web:1.4.2:                # another repository: blobs are mounted, not uploaded
      registry_image.tagged:
        - source: team/web:1.4.2

The target tag ends up at the source's digest, byte for byte; when it already points there the
state changes nothing.
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "registry_image"


def __virtual__() -> str | tuple[bool, str]:
    # `registry.parse` exists only in saltyard's module.
    if "registry.parse" not in __salt__:
        return (False, "registry_image: saltyard's registry execution module is not loaded")
    return __virtualname__


def tagged(
    name: str,
    source: str,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    immutable: bool = False,
) -> dict[str, Any]:
    """
    Ensure the tag ``name`` (``repo:tag``) points at the manifest ``source`` points at.

    name
        The target, ``repository:tag``.
    source
        ``repository:tag``, ``repository@sha256:...``, or a bare tag of the target's
        repository. It must exist.
    url, username, password, ca_file
        Override the connection settings from ``registry:client``.
    immutable
        The tag is a release version: create it, or find it already on the same manifest, but
        never move it. A tag that names another digest fails the state (in test mode too) and
        is left alone. A moving tag (``stable``) leaves this False.

    SLS Example:

    .. code-block:: yaml

        team/web:stable:
          registry_image.tagged:
            - source: team/web:1.4.2

        team/web:1.4.2:
          registry_image.tagged:
            - source: team/web:3f2c9e1d0b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d
            - immutable: True

    CLI Example:

    .. code-block:: bash

        salt '*' state.single registry_image.tagged team/web:stable source=1.4.2 test=True
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    settings = {"url": url, "username": username, "password": password, "ca_file": ca_file}
    connection = {k: v for k, v in settings.items() if v is not None}
    # Both references are checked before the registry is asked anything.
    try:
        target = __salt__["registry.parse"](name)
        if target["reference"].startswith("sha256:"):
            ret["comment"] = f"{name}: the target must be repository:tag, not a digest"
            return ret
        if not source:
            ret["comment"] = f"{name}: no source given (repository:tag or a tag)"
            return ret
        origin = __salt__["registry.parse"](str(source), default_repository=target["repository"])
    except CommandExecutionError as exc:
        ret["comment"] = f"{name}: {exc}"
        return ret

    repository, tag = target["repository"], target["reference"]
    try:
        wanted = __salt__["registry.digest"](
            origin["repository"], origin["reference"], **connection
        )
        current = None
        if __salt__["registry.exists"](repository, tag, **connection):
            current = __salt__["registry.digest"](repository, tag, **connection)
        if current == wanted:
            ret["result"] = True
            ret["comment"] = f"{repository}:{tag} already points at {wanted}"
            return ret
        if immutable and current is not None:
            ret["comment"] = (
                f"{repository}:{tag} already names {current}, not {wanted} (from {source}): "
                "a release tag is never moved; release another version"
            )
            return ret
        changes = {"old": current, "new": wanted}
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = changes
            ret["comment"] = f"{repository}:{tag} would point at {wanted} (from {source})"
            return ret
        moved = __salt__["registry.retag"](
            origin["repository"],
            origin["reference"],
            tag,
            target_repository=repository,
            **connection,
        )
        ret["changes"] = changes
        # Read back: the PUT answering 201 does not prove what the tag resolves to now.
        now = __salt__["registry.digest"](repository, tag, **connection)
        if moved["digest"] != wanted or now != wanted:
            ret["comment"] = (
                f"{repository}:{tag} was retagged but points at {now}, not {wanted} "
                "(did the source move meanwhile?)"
            )
            return ret
    except CommandExecutionError as exc:
        ret["comment"] = f"{name}: {exc}"
        return ret
    ret["result"] = True
    ret["comment"] = f"{repository}:{tag} now points at {wanted} (from {source})"
    return ret
