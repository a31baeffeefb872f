"""The bridge's side of IPAM reconciliation: freeing allocations whose Marathon task is gone.

The IPAM plugin (saltyard.ipam) keeps one Consul KV record per allocated container address,
and each host's plugin frees only its own host's orphans. Nobody else runs for a host that is
gone for good, so its allocations would stay taken forever; neither does anything free an
allocation whose container Marathon no longer runs while its host's engine still shows it.
The bridge is the one process that sees every Marathon task (each full resync lists them all)
and is already leader-elected, so it frees those:

- a record whose ``task_id`` (filled in by the host's reconciler) Marathon's task list of the
  same full resync does not contain is *missing*; records without a task id are the host
  plugin's business and never touched;
- a missing record is freed once it has been missing for ``grace`` seconds, counted in this
  bridge's memory from the first resync that found that record at that ModifyIndex. The clock
  starts again when the record changes (a host's reconciler or a replay rewrote it) and when
  this bridge loses or regains the lock, so a free comes later, never sooner; a record whose
  task shows up again is forgotten;
- the free is one transaction: the leader lock's session check, then the record's index check
  and its ``delete-cas``. A bridge that lost the lock frees nothing, nor does any bridge free a
  record changed or released since it read it (a conflict, counted, not an error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from saltyard.ipam.store import Allocation

from .consul_store import ConsulStore
from .metrics import Metrics

log = logging.getLogger("saltyard.bridge.ipam")


@dataclass(frozen=True)
class IpamRecord:
    key: str
    modify_index: int
    allocation: Allocation


def read_records(store: ConsulStore, prefix: str) -> list[IpamRecord]:
    """Every allocation record under ``prefix`` (one recursive read). A key whose value is not
    a record (someone else's key under the prefix) is left out: it is nothing to free."""
    records = []
    for entry in store.kv_tree(prefix):
        try:
            allocation = Allocation.from_entry(entry)
        except (ValueError, TypeError) as exc:
            log.debug("%s is not an allocation record: %s", entry.get("Key"), exc)
            continue
        records.append(IpamRecord(entry["Key"], int(entry.get("ModifyIndex") or 0), allocation))
    return records


class TaskIndex:
    """The task ids Marathon lists, matched the way the bridge matches gone tasks: exactly, or
    by Marathon 1.4+ instance id, whose task ids extend it with ``.`` (either side may hold the
    instance id). A record is only ever freed when its task id matches nothing here."""

    def __init__(self, task_ids: Iterable[str]):
        self.ids = {t for t in task_ids if t}
        # Every dot-prefix of a listed id: a record holding an instance id whose task is listed.
        self.prefixes = {t[:i] for t in self.ids for i, c in enumerate(t) if c == "."}

    def __contains__(self, task_id: str) -> bool:
        if task_id in self.ids or task_id in self.prefixes:
            return True
        # A record holding a task id that extends a listed (instance) id.
        return any(task_id[:i] in self.ids for i, c in enumerate(task_id) if c == ".")


class IpamReaper:
    """Frees allocations whose Marathon task is gone; ``run`` once per full resync, by the
    active bridge only. Single-threaded: the bridge's worker calls it."""

    def __init__(
        self,
        store: ConsulStore,
        metrics: Metrics,
        *,
        prefix: str,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.metrics = metrics
        self.prefix = prefix
        self.grace = grace
        self._clock = clock
        # key -> (ModifyIndex when first found missing, monotonic time then)
        self._missing: dict[str, tuple[int, float]] = {}
        self._term: object = None
        self.last_run: str | None = None
        self.last_error: str | None = None

    @property
    def missing(self) -> int:
        return len(self._missing)

    def run(self, task_ids: Iterable[str], lock_key: str, session_id: str, term: object) -> dict:
        """One pass against ``task_ids`` (every task of one Marathon listing). ``term``
        changes whenever this bridge's leadership does: every clock starts again then.
        What it did: ``freed``, ``conflicts`` (keys), ``missing`` (key -> seconds so far).
        Raises ConsulError (reading or freeing) and LockLost (the lock is not held)."""
        if term != self._term:
            self._missing.clear()
            self._term = term
        known = TaskIndex(task_ids)
        records = read_records(self.store, self.prefix)
        now = self._clock()
        report: dict[str, Any] = {"freed": [], "conflicts": [], "missing": {}}
        still: set[str] = set()
        for record in records:
            task_id = record.allocation.task_id
            if not task_id or task_id in known:
                continue  # the host plugin's business, or its task runs
            index, since = self._missing.get(record.key, (None, now))
            if index != record.modify_index:
                since = now  # first seen missing, or rewritten since: the clock starts now
                self._missing[record.key] = (record.modify_index, now)
                self._announce(record)
            gone_for = now - since
            if gone_for < self.grace:
                still.add(record.key)
                report["missing"][record.key] = round(gone_for, 3)
                continue
            del self._missing[record.key]
            if self.store.delete_fenced(record.key, record.modify_index, lock_key, session_id):
                self.metrics.inc("ipam_frees")
                report["freed"].append(record.key)
                self._log_free(record, gone_for)
            else:
                self.metrics.inc("ipam_conflicts")
                report["conflicts"].append(record.key)
                log.info(
                    "%s of pool %s (task %s) changed or was released since it was read; "
                    "not freed (looked at again next resync)",
                    record.allocation.address,
                    record.allocation.pool,
                    task_id,
                )
        # Gone from Consul, task back, task id cleared: forgotten.
        for key in [k for k in self._missing if k not in still]:
            del self._missing[key]
        self.last_run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.last_error = None
        return report

    def _announce(self, record: IpamRecord) -> None:
        a = record.allocation
        log.info(
            "%s of pool %s (host %s, task %s): Marathon does not list its task; freed after "
            "%gs unless the task shows up or the record changes",
            a.address,
            a.pool,
            a.host,
            a.task_id,
            self.grace,
        )

    def _log_free(self, record: IpamRecord, gone_for: float) -> None:
        a = record.allocation
        log.warning(
            "freed %s of pool %s (host %s, task %s): its Marathon task has been gone for %.1fs "
            "(grace %gs; allocated %s, container %s)",
            a.address,
            a.pool,
            a.host,
            a.task_id,
            gone_for,
            self.grace,
            a.time or "unknown",
            a.container_name or a.container or "unknown",
        )

    def failed(self, text: str) -> None:
        self.last_error = text

    def status(self, active: bool) -> dict[str, Any]:
        """For /health: the records missing now, each with how long so far (none while
        passive: a passive bridge keeps no clock that counts)."""
        now = self._clock()
        missing = dict(self._missing) if active else {}
        return {
            "enabled": True,
            "prefix": self.prefix,
            "grace": self.grace,
            "missing": {key: round(now - since, 3) for key, (_, since) in sorted(missing.items())},
            "last_run": self.last_run,
            "last_error": self.last_error,
        }
