"""Reconciliation of this host's allocations with what the local Docker engine's containers hold.

Why: Docker sends ``ReleaseAddress`` when an endpoint goes, but never when its engine (or the
host) dies, or when the plugin is down at that moment; such an address would stay allocated
forever. Every ``interval`` the reconciler compares this host's allocations in Consul with the
addresses containers hold on networks of this plugin (``IPAM.Driver`` is the plugin's name):

- an allocation no container holds is freed once it has been missing for ``grace`` seconds,
  counted from the first pass that found it missing (and again from 0 after a plugin restart,
  or when the allocation changed): an address is requested before its container shows it, so
  an allocation may look orphaned for a moment, and freeing it then would hand it out twice.
  The free is a delete with ``cas=<ModifyIndex>``: an allocation replayed or changed since the
  pass read it is not touched;
- an allocation a container holds gets that container recorded (id, name, network, endpoint,
  and the Marathon task id from its ``MESOS_TASK_ID``);
- an address a running container holds without an allocation (Consul lost it, or a pass freed
  it wrongly) is allocated again for this host, so no other host gets it; one that another host
  holds is a conflict, logged and counted.

Nothing is freed when the engine does not answer: then nobody knows what runs. Every action is
logged and counted (counters.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import docker
import requests

from .counters import Counters
from .errors import IpamError
from .pools import Pool
from .settings import Settings
from .store import Allocation, AllocationStore, now_text

log = logging.getLogger("saltyard.ipam.reconcile")

TASK_ID_ENV = "MESOS_TASK_ID"


@dataclass(frozen=True)
class Holder:
    """A container holding an address on one of this plugin's networks."""

    address: str
    container: str
    name: str
    network: str
    endpoint: str
    mac: str | None
    running: bool


def connect_docker(settings: Settings) -> docker.DockerClient:
    """A client of the local engine: ``docker.url`` from the config, else the environment's."""
    if settings.docker_url:
        return docker.DockerClient(base_url=settings.docker_url, timeout=settings.docker_timeout)
    return docker.from_env(timeout=settings.docker_timeout)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: AllocationStore,
        counters: Counters,
        *,
        engine: Callable[[], docker.DockerClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.store = store
        self.counters = counters
        self.host = settings.host
        self.grace = settings.reconcile_grace
        self.interval = settings.reconcile_interval
        self._connect = engine or (lambda: connect_docker(settings))
        self._engine: docker.DockerClient | None = None
        self._clock = clock
        # (pool, address) -> (ModifyIndex when first found missing, monotonic time then)
        self._missing: dict[tuple[str, str], tuple[int, float]] = {}
        self._announced: set[tuple[str, str]] = set()  # missing ones logged at INFO
        self._conflicts: set[tuple[str, str]] = set()
        # Addresses a container held with no allocation in Consul at the last pass: key ->
        # container id. Only one held so at two passes in a row is restored (see _pass).
        self._unrecorded: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # one pass at a time (the loop, or a caller's run_once)
        self.last_run: str | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------------ the engine's view

    def _pool_of(self, address: str) -> Pool | None:
        try:
            ip = IPv4Address(address)
        except ValueError:
            return None
        return next((p for p in self.settings.pools if ip in p.subnet), None)

    def held_addresses(self) -> dict[tuple[str, str], Holder]:
        """(pool, address) -> the container holding it on one of this plugin's networks.
        Raises docker's errors when the engine does not answer."""
        if self._engine is None:
            self._engine = self._connect()
        api = self._engine.api
        ours = {
            n["Id"]: n.get("Name", "")
            for n in api.networks()
            if (n.get("IPAM") or {}).get("Driver") == self.settings.plugin_name
        }
        held: dict[tuple[str, str], Holder] = {}
        if not ours:
            return held
        for container in api.containers(all=True):
            networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
            for net_name, endpoint in networks.items():
                address = (endpoint or {}).get("IPAddress")
                if not address or endpoint.get("NetworkID") not in ours:
                    continue
                pool = self._pool_of(address)
                if pool is None:
                    continue
                names = container.get("Names") or []
                held[(pool.name, address)] = Holder(
                    address=address,
                    container=container["Id"],
                    name=names[0].lstrip("/") if names else "",
                    network=net_name,
                    endpoint=endpoint.get("EndpointID") or "",
                    mac=(endpoint.get("MacAddress") or "").lower() or None,
                    running=container.get("State") == "running",
                )
        return held

    def _task_id(self, container: str) -> str | None:
        """The Marathon task id of a container (Mesos puts it in the task's environment)."""
        try:
            info = self._engine.api.inspect_container(container)
        except docker.errors.NotFound:
            return None
        for item in (info.get("Config") or {}).get("Env") or []:
            key, _, value = item.partition("=")
            if key == TASK_ID_ENV:
                return value or None
        return None

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> dict[str, Any]:
        """One reconciliation pass; what it did (``freed``, ``recorded``, ``restored``,
        ``conflicts``: lists of addresses; ``missing``: address -> seconds missing so far).
        Raises when Consul or the engine does not answer (nothing is freed then)."""
        with self._lock:
            return self._pass()

    def _pass(self) -> dict[str, Any]:
        pools = {p.name: p for p in self.settings.pools}
        # Consul first, the engine second: an address allocated between the two reads is in
        # neither the records nor (yet) a container, and an address released between them is
        # in the records but no longer held, which only starts its grace period.
        records = [r for r in self.store.list() if r.pool in pools]
        held = self.held_addresses()
        now = self._clock()
        report: dict[str, Any] = {
            "freed": [],
            "recorded": [],
            "restored": [],
            "conflicts": [],
            "missing": {},
        }
        everyone = {(r.pool, r.address): r for r in records}
        mine = [r for r in records if r.host == self.host]
        for record in mine:
            key = (record.pool, record.address)
            holder = held.get(key)
            if holder is not None:
                self._missing.pop(key, None)
                self._announced.discard(key)
                if self._record(record, holder):
                    report["recorded"].append(record.address)
                continue
            index, since = self._missing.get(key, (None, now))
            if index != record.modify_index:
                since = now
                self._missing[key] = (record.modify_index, now)
                self._announced.discard(key)
            missing_for = now - since
            # A pass may fall between an allocation and its container's start: only an
            # allocation still missing at the next pass is worth a line at INFO.
            if 0 < missing_for and key not in self._announced:
                self._announced.add(key)
                log.info(
                    "no container holds %s of pool %s (allocated %s to %s) since %.1fs; "
                    "freed after %gs unless one does",
                    record.address,
                    record.pool,
                    record.time,
                    record.container_name or record.mac or "an unknown endpoint",
                    missing_for,
                    self.grace,
                )
            if missing_for < self.grace:
                report["missing"][record.address] = round(missing_for, 3)
                continue
            del self._missing[key]
            if self.store.delete(record):
                self.counters.inc("reconcile_frees")
                report["freed"].append(record.address)
                log.warning(
                    "freed %s of pool %s: no container has held it for %.1fs (grace %gs; "
                    "allocated %s, container %s, task %s, MAC %s)",
                    record.address,
                    record.pool,
                    missing_for,
                    self.grace,
                    record.time,
                    record.container_name or record.container or "unknown",
                    record.task_id or "unknown",
                    record.mac or "unknown",
                )
            else:
                log.info("%s of pool %s changed meanwhile; not freed", record.address, record.pool)
        seen = {(r.pool, r.address) for r in mine}
        for key in [k for k in self._missing if k not in seen]:
            del self._missing[key]  # released, or freed by someone else
        self._announced &= set(self._missing)
        unrecorded: dict[tuple[str, str], str] = {}
        for key, holder in sorted(held.items()):
            record = everyone.get(key)
            if record is not None:
                if record.host != self.host:
                    report["conflicts"].append(holder.address)
                    if key not in self._conflicts:
                        self._conflicts.add(key)
                        self.counters.inc("reconcile_conflicts")
                        log.error(
                            "container %s on this host holds %s of pool %s, which is allocated "
                            "to host %s",
                            holder.name,
                            holder.address,
                            key[0],
                            record.host,
                        )
                continue
            # Held with no allocation. It may be a container that connected and disconnected
            # between the two reads (its release already done): restoring that would leak the
            # address until the grace frees it. A lost record shows at the next pass too.
            if not holder.running:
                continue
            unrecorded[key] = holder.container
            if self._unrecorded.get(key) == holder.container and self._restore(
                pools[key[0]], holder
            ):
                report["restored"].append(holder.address)
        self._unrecorded = unrecorded
        self._conflicts &= {k for k, h in held.items() if k in everyone}
        self.counters.inc("reconcile_runs")
        self.last_run = now_text()
        self.last_error = None
        return report

    def _record(self, record: Allocation, holder: Holder) -> bool:
        """Write the holding container into the record when it is not there yet."""
        changes: dict[str, Any] = {}
        if record.container != holder.container:
            changes["container"] = holder.container
            changes["task_id"] = self._task_id(holder.container)
        for name, value in (
            ("container_name", holder.name),
            ("network", holder.network),
            ("endpoint", holder.endpoint),
        ):
            if value and getattr(record, name) != value:
                changes[name] = value
        if not record.mac and holder.mac:
            changes["mac"] = holder.mac
        if not changes:
            return False
        if self.store.update(record, **changes) is None:
            return False  # changed meanwhile: the next pass looks again
        self.counters.inc("reconcile_records")
        log.info(
            "recorded %s of pool %s: container %s (%s), task %s, network %s",
            record.address,
            record.pool,
            holder.name,
            holder.container[:12],
            changes.get("task_id", record.task_id) or "none",
            holder.network,
        )
        return True

    def _restore(self, pool: Pool, holder: Holder) -> bool:
        ip = IPv4Address(holder.address)
        refusal = pool.refusal(ip)
        if refusal:
            log.error("container %s holds %s: %s", holder.name, holder.address, refusal)
            return False
        record = Allocation(
            pool=pool.name,
            address=holder.address,
            host=self.host,
            mac=holder.mac,
            network=holder.network,
            endpoint=holder.endpoint,
            container=holder.container,
            container_name=holder.name,
            task_id=self._task_id(holder.container),
            time=now_text(),
        )
        if not self.store.create(record):
            return False  # allocated meanwhile; the next pass sees by whom
        self.counters.inc("reconcile_restores")
        log.warning(
            "restored %s of pool %s: container %s holds it and Consul had no allocation",
            holder.address,
            pool.name,
            holder.name,
        )
        return True

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """A pass now and every ``interval`` until ``stop`` is set; failures are logged and
        counted, and the next pass tries again."""
        while not stop.is_set():
            try:
                self.run_once()
            except IpamError as exc:
                self._failed("consul", str(exc))
            except (docker.errors.DockerException, requests.RequestException) as exc:
                self._engine = None  # a new client next time (the engine may have restarted)
                self._failed("docker", str(exc))
            except Exception as exc:  # noqa: BLE001 - the loop must survive to try again
                self._engine = None
                log.exception("reconciliation failed")
                self._failed("internal", str(exc))
            stop.wait(self.interval)

    def _failed(self, source: str, text: str) -> None:
        self.counters.inc("reconcile_errors", source)
        self.last_error = f"{source}: {text}"
        if source != "internal":
            log.warning("reconciliation skipped (nothing freed): %s: %s", source, text)

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "interval": self.interval,
            "grace": self.grace,
            "last_run": self.last_run,
            "last_error": self.last_error,
            "missing": {
                f"{pool}/{address}": round(now - since, 3)
                for (pool, address), (_, since) in sorted(dict(self._missing).items())
            },
        }
