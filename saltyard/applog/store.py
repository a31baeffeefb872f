"""What the log node holds and what its Flume agent reports: ``applog.tail`` and ``applog.stats``.

The files sink writes ``<directory>/<env>/<app>/<YYYY-MM-DD>.log`` (io.saltyard.flume.
GroupedFileSink); Flume's HTTP monitoring (``-Dflume.monitoring.type=http``) answers
``/metrics`` with every component's counters; TAILDIR's position file says how far into each
spool file Flume has read.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import re
import urllib.request
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def app_file(directory: str, app: str, env: str, day: str | None = None) -> Path:
    """The sink's file of ``app`` in ``env`` on ``day`` (YYYY-MM-DD; default: the newest day)."""
    for what, value in (("app", app), ("env", env)):
        if not NAME_RE.match(value or ""):
            raise ValueError(f"{what} {value!r} is not a name the log store uses")
    folder = Path(directory) / env / app
    if day is not None:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise ValueError(f"day {day!r} is not YYYY-MM-DD")
        return folder / f"{day}.log"
    days = sorted(folder.glob("????-??-??.log"))
    if not days:
        known = (
            sorted(p.name for p in Path(directory, env).glob("*")) if folder.parent.is_dir() else []
        )
        raise FileNotFoundError(
            f"no lines of app {app!r} in env {env!r} under {directory}"
            + (f" (apps with lines in {env}: {', '.join(known)})" if known else "")
        )
    return days[-1]


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (read from the end: the file may be large)."""
    if lines < 1:
        raise ValueError(f"lines {lines!r} must be at least 1")
    keep: collections.deque[bytes] = collections.deque(maxlen=lines)
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block, data, pos = 65536, b"", size
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    for line in data.splitlines()[-lines:]:
        keep.append(line)
    return [line.decode("utf-8", "replace") for line in keep]


def flume_metrics(port: int, timeout: float = 5) -> dict:
    """Flume's counters, ``{"SOURCE.spool": {...}, "CHANNEL.durable": {...}, ...}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as answer:
        return json.load(answer)


def spool_backlog(spool_dir: str, position_file: str) -> dict:
    """Bytes of the spool files that Flume has not read yet, from TAILDIR's position file."""
    try:
        positions = {p["file"]: p["pos"] for p in json.loads(Path(position_file).read_text())}
    except FileNotFoundError:
        positions = {}
    files = sorted(Path(spool_dir).glob("apps-*.log"))
    unread = sum(max(0, f.stat().st_size - positions.get(str(f), 0)) for f in files)
    return {"spool_files": len(files), "unread_bytes": unread}


def stats(port: int, spool_dir: str, position_file: str) -> dict:
    """Lines in, lines written and the channel's fill, as an operator reads them."""
    metrics = flume_metrics(port)
    sources = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("SOURCE.")}
    channels = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("CHANNEL.")}
    sinks = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("SINK.")}
    return {
        "lines_in": sum(int(s.get("EventAcceptedCount", 0)) for s in sources.values()),
        "lines_written": sum(int(s.get("EventDrainSuccessCount", 0)) for s in sinks.values()),
        "channel_fill_percent": max(
            (float(c.get("ChannelFillPercentage", 0)) for c in channels.values()), default=0.0
        ),
        "channel_events": sum(int(c.get("ChannelSize", 0)) for c in channels.values()),
        "spool": spool_backlog(spool_dir, position_file),
        "since": min(
            (int(s.get("StartTime", 0)) for s in sources.values() if s.get("StartTime")),
            default=0,
        ),
        "checked_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "flume": metrics,
    }
