"""Counters and gauges of the bridge, rendered as Prometheus text or JSON.

Hand-written: the exposition format for a dozen counters is a few lines, less than wiring a
metrics library into the daemon's runtime dependencies.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

PREFIX = "saltyard_bridge_"

# name -> (help, label name or None). Counters only; gauges come from the bridge's state.
COUNTERS: dict[str, tuple[str, str | None]] = {
    "registrations": ("Service instances registered or updated in Consul", None),
    "deregistrations": ("Service instances removed from Consul", None),
    "resyncs": ("Full resyncs completed (every app against everything the bridge owns)", None),
    "app_resyncs": ("Single-app resyncs completed after events", None),
    "events": ("Marathon events received", None),
    "stream_reconnects": ("Times the event stream ended or failed and was opened again", None),
    "errors": ("Errors, by where they came from", "source"),
    "skipped_apps": ("Apps found not registrable, by reason (once per app and reason)", "reason"),
    "skipped_tasks": ("Tasks left out of Consul, by reason (once per task and reason)", "reason"),
    "leader_changes": ("Times this bridge became active or passive", None),
    "ipam_frees": ("IPAM allocations freed because their Marathon task was gone", None),
    "ipam_conflicts": (
        "IPAM allocations due to be freed that had changed or gone since they were read",
        None,
    ),
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str | None], int] = {}

    def inc(self, name: str, label: str | None = None, amount: int = 1) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name}")
        with self._lock:
            key = (name, label)
            self._values[key] = self._values.get(key, 0) + amount

    def get(self, name: str, label: str | None = None) -> int:
        with self._lock:
            return self._values.get((name, label), 0)

    def as_json(self) -> dict[str, int | dict[str, int]]:
        """``{"registrations": 3, "errors": {"consul": 1}, ...}``; every counter present."""
        with self._lock:
            values = dict(self._values)
        out: dict[str, int | dict[str, int]] = {}
        for name, (_, label_name) in COUNTERS.items():
            if label_name is None:
                out[name] = values.get((name, None), 0)
            else:
                out[name] = {lbl: n for (nm, lbl), n in sorted(values.items()) if nm == name}
        return out

    def prometheus(self, gauges: Mapping[str, tuple[str, float | Mapping[str, float]]]) -> str:
        """Prometheus text format. ``gauges``: name -> (help, value or {label value: value}),
        labelled gauges use the label ``reason``."""
        counters = self.as_json()
        lines: list[str] = []
        for name, (help_text, label_name) in COUNTERS.items():
            full = f"{PREFIX}{name}_total"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} counter"]
            value = counters[name]
            if isinstance(value, dict):
                for lbl, n in value.items():
                    lines.append(f'{full}{{{label_name}="{_escape(lbl)}"}} {n}')
            else:
                lines.append(f"{full} {value}")
        for name, (help_text, value) in gauges.items():
            full = PREFIX + name
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge"]
            if isinstance(value, Mapping):
                for lbl, n in value.items():
                    lines.append(f'{full}{{reason="{_escape(lbl)}"}} {n:g}')
            else:
                lines.append(f"{full} {value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
