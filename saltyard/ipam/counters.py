"""The plugin's counters, shown by its status endpoint (``GET /Saltyard.Status``)."""

from __future__ import annotations

import threading

# name -> (what it counts, the label it is counted by or None).
COUNTERS: dict[str, tuple[str, str | None]] = {
    "allocations": ("addresses allocated (new keys in Consul)", None),
    "replays": ("specific-address requests answered with this host's allocation", None),
    "releases": ("addresses released by Docker's ReleaseAddress", None),
    "releases_unknown": ("ReleaseAddress for an address with no allocation (already free)", None),
    "refusals": ("requests refused (bad request, address taken, ...), by method", "method"),
    "pool_full": ("allocations refused because the pool was full, by pool", "pool"),
    "errors": ("requests that failed (Consul away, a bug), by method", "method"),
    "reconcile_runs": ("reconciliation passes completed", None),
    "reconcile_frees": ("allocations freed by reconciliation after the grace period", None),
    "reconcile_records": ("allocations whose container reconciliation recorded", None),
    "reconcile_restores": ("allocations re-created for an address a container holds", None),
    "reconcile_conflicts": ("addresses a local container holds that another host has", None),
    "reconcile_errors": ("reconciliation passes that failed, by source", "source"),
}


class Counters:
    """Thread-safe counters; ``inc("errors", "consul")`` counts under a label."""

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
            if label is None:
                return sum(n for (nm, _), n in self._values.items() if nm == name)
            return self._values.get((name, label), 0)

    def as_json(self) -> dict[str, int | dict[str, int]]:
        """Every counter: a number, or ``{label: number}`` for those counted by label."""
        with self._lock:
            values = dict(self._values)
        out: dict[str, int | dict[str, int]] = {}
        for name, (_, label) in COUNTERS.items():
            if label is None:
                out[name] = values.get((name, None), 0)
            else:
                out[name] = {
                    str(lbl): n for (nm, lbl), n in sorted(values.items(), key=str) if nm == name
                }
        return out
