"""
Application logs on the log node, and the Flume configuration of the logging role.

A thin adapter over ``saltyard.applog`` (docs/logging.md): containers' lines reach the log node
through rsyslog and Flume, which writes ``<directory>/<env>/<app>/<YYYY-MM-DD>.log``::

    salt log1 applog.tail hello prod lines=100
    salt log1 applog.stats

``config_problems`` and ``flume_config`` are the logging role's render-time check and Flume's
properties file (states/logging), from the ``logging`` pillar.
"""

from __future__ import annotations

import salt.utils.dictupdate
import salt.utils.yaml
from salt.exceptions import CommandExecutionError

try:
    from saltyard.applog import flume_conf, store

    HAS_SALTYARD = True
except ImportError:  # the minion's Python lacks the saltyard package
    HAS_SALTYARD = False

__virtualname__ = "applog"


def __virtual__():
    if not HAS_SALTYARD:
        return False, "applog: the saltyard package is not importable by the minion"
    return __virtualname__


def _params() -> dict:
    """The logging role's parameters as its states see them: the role's defaults.yaml (from the
    master's file server) with pillar ``logging`` merged over it."""
    if "logging" not in (__pillar__.get("saltyard") or {}).get("roles", []):
        raise CommandExecutionError("this minion is not the log node (no logging role)")
    text = __salt__["cp.get_file_str"]("salt://logging/defaults.yaml")
    if not text:
        raise CommandExecutionError("salt://logging/defaults.yaml is not on the master")
    defaults = salt.utils.yaml.safe_load(text)["logging"]
    return salt.utils.dictupdate.merge(
        defaults, __pillar__.get("logging") or {}, strategy="recurse"
    )


def tail(app: str, env: str, lines: int = 100, day: str | None = None) -> list[str]:
    """The last ``lines`` lines of ``app`` in ``env`` (on ``day``, YYYY-MM-DD; default the newest
    day with lines), each as ``<time> <env> <app> <host> <task id> <message>``.

    CLI Example:

    .. code-block:: bash

        salt log1 applog.tail hello prod lines=100
        salt log1 applog.tail hello fat day=2026-12-06
    """
    sink = _params()["flume"]["sink"]
    if sink.get("type") != "files":
        raise CommandExecutionError(
            f"the Flume sink is {sink.get('type')!r}: lines are in that store, not on this node"
        )
    try:
        path = store.app_file(sink["directory"], str(app), str(env), day)
        return store.tail(path, int(lines))
    except (ValueError, FileNotFoundError) as exc:
        raise CommandExecutionError(str(exc)) from None


def stats() -> dict:
    """Lines in (accepted by Flume's sources), lines written (drained by its sink), the file
    channel's fill, and the spool bytes Flume has not read yet.

    CLI Example:

    .. code-block:: bash

        salt log1 applog.stats
    """
    params = _params()
    flume = params["flume"]
    try:
        return store.stats(
            flume["monitoring_port"],
            params["spool_dir"],
            f"{flume['state_dir']}/taildir-positions.json",
        )
    except OSError as exc:
        raise CommandExecutionError(
            f"Flume's monitoring on 127.0.0.1:{flume['monitoring_port']} did not answer: {exc}"
            " (systemctl status saltyard-flume)"
        ) from None


def config_problems(params: dict) -> list[str]:
    """Every bad value of the ``logging`` pillar ``params``, each naming its key (empty: good).

    CLI Example:

    .. code-block:: bash

        salt log1 applog.config_problems "$(salt-call --out=json pillar.get logging)"
    """
    return flume_conf.problems(params)


def flume_config(agent: str, params: dict) -> str:
    """Flume's properties file for ``agent`` from the ``logging`` pillar ``params``; refuses
    bad pillar with every problem named.

    CLI Example:

    .. code-block:: bash

        salt log1 applog.flume_config log1 "$(salt-call --out=json pillar.get logging)"
    """
    found = flume_conf.problems(params)
    if found:
        raise CommandExecutionError("; ".join(found))
    return flume_conf.render(agent, params)
