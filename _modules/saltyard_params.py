"""
Checks of a saltyard component's pillar against its ``defaults.yaml``, for the map.jinja files.

A misspelt key (``docker:storage_drvier``) would otherwise be ignored without a word: every
component's map.jinja asks ``unknown_keys`` and refuses to render when it names one. Nested
maps of the defaults are checked the same way, except the open ones the component declares
(``sysctl``, ``users``, ``flags``, ...), whose keys are the user's to choose.
"""

from __future__ import annotations

from typing import Any

__virtualname__ = "saltyard_params"


def __virtual__() -> str:
    return __virtualname__


def _unknown(defaults: dict, given: dict, path: str, open_maps: set[str], found: list[str]) -> None:
    for key in sorted(given, key=str):
        where = f"{path}:{key}"
        if key not in defaults:
            known = ", ".join(sorted(map(str, defaults))) or "none"
            found.append(f"pillar {where} is not a known key (known under {path}: {known})")
            continue
        if where.split(":", 1)[1] in open_maps:
            continue
        if isinstance(defaults[key], dict) and isinstance(given[key], dict):
            _unknown(defaults[key], given[key], where, open_maps, found)


def unknown_keys(
    component: str, defaults: dict, given: Any = None, open_maps: list[str] | None = None
) -> str | None:
    """
    Why pillar ``component`` (``given``) has keys that ``defaults`` (the component's
    defaults.yaml) does not know, each named with the keys known at its level; None when every
    key is known. ``open_maps`` lists the maps (colon paths below the component, such as
    ``sysctl`` or ``agent:flags``) whose keys are free.

    CLI Example:

    .. code-block:: bash

        salt '*' saltyard_params.unknown_keys docker '{"storage_driver": "overlay2"}' \\
            '{"storage_drvier": "aufs"}'
    """
    if given is None or given == "":
        return None
    if not isinstance(given, dict):
        return f"pillar {component} must be a mapping, got {given!r}"
    found: list[str] = []
    _unknown(defaults or {}, given, component, set(open_maps or []), found)
    return "; ".join(found) or None
