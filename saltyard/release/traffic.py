"""One gate window's figures from an lb node's access log.

The lb role has nginx write one JSON object per proxied request to the release log
(``LOG_FORMAT``, the ``saltyard_release`` format in states/lb/files/saltyard-lb.conf.jinja):
when the request ended (``t``, seconds since the epoch with milliseconds), the virtual host's app
and env, the group the traffic split chose (``canary`` or ``stable``), the status sent to the
client, and the upstream time. ``window`` reads the requests of one app and env that ended in
[start, end) and returns a ``gate.Figures`` per group, for the orchestration to merge across lb
nodes and hand to ``gate.decide``.

The log is read backwards from its end, so a window costs what it holds, not the size of the log.
nginx writes a line when a request ends, so lines are in time order only up to the longest
request in flight: the scan stops at the first line that ended ``SLACK`` seconds before
``start``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from saltyard.release.gate import Figures

# The format nginx writes, for the lb role's template and for the tests (one place).
LOG_FORMAT = (
    '{"t":$msec,"app":"$saltyard_app","env":"$saltyard_env","group":"$saltyard_group",'
    '"status":$status,"upstream_time":"$upstream_response_time",'
    '"upstream":"$upstream_addr"}'
)
GROUPS = ("canary", "stable")
# Longer than any request the lb lets run (proxy_read_timeout is nginx's default, 60 s).
SLACK = 75.0
CHUNK = 64 * 1024


def lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's complete lines, last first. What follows the last newline is a line nginx has
    not finished writing, and is skipped."""
    with open(path, "rb") as log:
        position = log.seek(0, os.SEEK_END)
        pending = b""  # the start of a line whose beginning is in a chunk not read yet
        in_partial = True  # still inside the unfinished last line
        while position > 0:
            size = min(CHUNK, position)
            position -= size
            log.seek(position)
            parts = (log.read(size) + pending).split(b"\n")
            pending, complete = parts[0], parts[1:]
            if in_partial:
                if not complete:
                    pending = b""  # no newline yet: all of it belongs to the unfinished line
                    continue
                complete = complete[:-1]
                in_partial = False
            for line in reversed(complete):
                if line:
                    yield line
        if pending and not in_partial:
            yield pending


def upstream_ms(value: str) -> float | None:
    """nginx's ``$upstream_response_time``: seconds, with one figure per upstream tried,
    ``"0.002, 0.010"`` (a retry), and ``-`` for an attempt without an answer. The client waited
    for all of them, so they add up; None when no upstream was reached at all."""
    total = 0.0
    reached = False
    for part in value.replace(":", ",").split(","):
        part = part.strip()
        if not part or part == "-":
            continue
        total += float(part)
        reached = True
    return total * 1000.0 if reached else None


def window(path: Path, app: str, env: str, start: float, end: float) -> dict[str, Figures]:
    """The figures of the requests to ``app`` in ``env`` that ended in [start, end), per group.
    A request that reached no upstream (nginx answered it alone, for example 502 with every
    instance refused) counts as a request and as a 5xx, with its latency unknown."""
    figures = {group: Figures() for group in GROUPS}
    if not path.exists():
        return figures
    for raw in lines_backwards(path):
        try:
            entry = json.loads(raw)
            ended = float(entry["t"])
        except (ValueError, KeyError, TypeError):
            continue  # not a line of this format (a line cut short by a full disk)
        if ended < start - SLACK:
            break
        if not start <= ended < end:
            continue
        if entry.get("app") != app or entry.get("env") != env:
            continue
        group = entry.get("group")
        if group not in figures:
            continue
        status = int(entry.get("status", 0))
        milliseconds = upstream_ms(str(entry.get("upstream_time", "")))
        if milliseconds is None:
            figures[group].requests += 1
            if 500 <= status <= 599:
                figures[group].errors_5xx += 1
        else:
            figures[group].add(status, milliseconds)
    return figures


# The comment line the lb role's template writes before each virtual host (states/lb/files/
# nginx-apps.conf.ctmpl): "# saltyard-canary-share <app>.<env> <percent>".
SHARE_MARKER = "# saltyard-canary-share "


def served_share(live: Path, app: str, env: str) -> dict:
    """The canary share an lb node's nginx serves for ``app`` in ``env``, from the live file
    consul-template's apply script swapped in: ``{"share": percent or None, "applied": bool}``.
    ``share`` is None when the file has no virtual host for the app in that env (no instance
    listed). ``applied`` is False while the live file is newer than the apply script's
    ``<live>.reloaded`` stamp: the file is in place but nginx has not reloaded it yet."""
    try:
        text = live.read_text()
        live_mtime = live.stat().st_mtime_ns
    except FileNotFoundError:
        return {"share": None, "applied": False, "live": str(live)}
    share = None
    wanted = f"{SHARE_MARKER}{app}.{env} "
    for line in text.splitlines():
        if line.startswith(wanted):
            try:
                share = float(line[len(wanted) :].strip())
            except ValueError:
                share = None
            break
    stamp = live.with_name(live.name + ".reloaded")
    try:
        applied = stamp.stat().st_mtime_ns >= live_mtime
    except FileNotFoundError:
        applied = False
    return {"share": share, "applied": applied, "live": str(live)}


class IncompleteWindow(Exception):
    """An lb node's figures are missing: judging the rest would judge part of the traffic."""


def merge(answers: dict[str, object], lb_nodes: list[str]) -> dict[str, Figures]:
    """One window's figures of every lb node (``release_traffic.window`` answers by minion id)
    added up per group. Every node in ``lb_nodes`` must have answered with figures; the
    message names the ones that did not and what they said."""
    missing = {
        node: answers.get(node, "no answer")
        for node in lb_nodes
        if not isinstance(answers.get(node), dict)
        or not all(isinstance(answers[node].get(g), dict) for g in GROUPS)
    }
    if missing:
        said = "; ".join(f"{node}: {str(what)[:200]}" for node, what in sorted(missing.items()))
        raise IncompleteWindow(f"no figures from lb node(s) {sorted(missing)} ({said})")
    merged = {group: Figures() for group in GROUPS}
    for node in lb_nodes:
        for group in GROUPS:
            merged[group] = merged[group].merge(Figures.from_dict(answers[node][group]))
    return merged
