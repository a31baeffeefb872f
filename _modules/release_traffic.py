"""
What an lb node served to the canary and the stable group of an app, for a gray release's gate.

A thin adapter over ``saltyard.release.traffic``: nginx on the lb nodes writes one JSON line per
proxied request to the release log (pillar ``lb:paths:release_log``, states/lb/defaults.yaml),
and ``window`` sums one app's requests in one env over [start, end) per group. The release
orchestration calls it on every lb node and merges the answers (docs/release.md)::

    salt -C 'I@saltyard:roles:lb' release_traffic.window hello prod 1764770000 1764770060

``share`` says which canary share the node's nginx serves (the lb template's marker line and the
apply script's reload stamp), for the workflow's wait after it sets a share. ``log_format`` is
the nginx format of that log, for the lb role's template: the format and its reader live in one
place.
"""

from __future__ import annotations

from pathlib import Path

from salt.exceptions import CommandExecutionError

try:
    from saltyard.release import traffic

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "release_traffic"

DEFAULT_LOG = "/var/log/nginx/saltyard-release.log"
DEFAULT_LIVE = "/etc/nginx/saltyard-lb/apps.conf"


def __virtual__():
    if not HAS_SALTYARD:
        return False, "release_traffic: the saltyard package is not importable by the minion"
    return __virtualname__


def log_format() -> str:
    """The nginx ``log_format`` string of the release log.

    CLI Example:

    .. code-block:: bash

        salt lb1 release_traffic.log_format
    """
    return traffic.LOG_FORMAT


def window(app: str, env: str, start: float, end: float, path: str | None = None) -> dict:
    """The requests to ``app`` in ``env`` that ended in [start, end) (seconds since the epoch),
    per group: ``{"canary": {...}, "stable": {...}, "log": path}``, each group as
    ``gate.Figures.to_dict`` (requests, 5xx answers, latency histogram) for merging.

    CLI Example:

    .. code-block:: bash

        salt lb1 release_traffic.window hello prod 1764770000 1764770060
    """
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        raise CommandExecutionError(
            f"release_traffic.window: start {start!r} and end {end!r} must be numbers "
            "(seconds since the epoch)"
        ) from None
    if end <= start:
        raise CommandExecutionError(f"release_traffic.window: end {end} is not after start {start}")
    log = Path(path or __salt__["config.get"]("lb:paths:release_log", DEFAULT_LOG))
    figures = traffic.window(log, str(app), str(env), start, end)
    result = {group: f.to_dict() for group, f in figures.items()}
    result["log"] = str(log)
    return result


def share(app: str, env: str, path: str | None = None) -> dict:
    """The canary share this lb node's nginx serves for ``app`` in ``env``:
    ``{"share": percent, or None when the app has no virtual host in env, "applied": whether
    nginx has reloaded the live file, "live": its path}``. The release workflow waits for every
    lb node to serve a new share before a gate window starts.

    CLI Example:

    .. code-block:: bash

        salt lb1 release_traffic.share hello prod
    """
    live = Path(path or __salt__["config.get"]("lb:paths:live", DEFAULT_LIVE))
    return traffic.served_share(live, str(app), str(env))
