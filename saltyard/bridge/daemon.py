"""The bridge daemon: threads, the work queue, and the reconciliation of Marathon with Consul.

Threads: the leader lock (leader.py), the event stream reader, one worker that does every
Consul write, and the status HTTP server. The stream only queues work (apps to re-read, tasks
to drop at once); the worker reads Marathon's state and writes the difference. One writer
means no two changes to the catalog race each other inside one bridge.

Pitfall guarded against: Marathon event streams drop or hang silently. The bridge resyncs
fully on every stream (re)connect and every ``resync_interval`` whatever the stream says, and
treats a stream that sends nothing for ``event_stream_timeout`` as dead.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from saltyard.clients.marathon import MarathonClient, MarathonError, MarathonEvent

from .consul_store import (
    ConsulDenied,
    ConsulError,
    ConsulStore,
    LockLost,
    NodeInfo,
    op_node_delete,
    op_service_delete,
    registration_ops,
)
from .ipam import IpamReaper
from .leader import Backoff, LeaderLock
from .metrics import Metrics
from .registrations import (
    GONE_STATES,
    NODE_META,
    NODE_PREFIX,
    UNRESOLVED_HOST,
    AppPlan,
    Registration,
    desired_registrations,
    parse_ipv4,
)
from .settings import Settings

log = logging.getLogger("saltyard.bridge")

EVENT_TYPES = (
    "status_update_event",
    "health_status_changed_event",
    "unhealthy_task_kill_event",
    "app_terminated_event",
    "api_post_event",
    "deployment_info",
    "deployment_step_success",
    "deployment_success",
    "deployment_failed",
)
# Events come in bursts (a deployment): a resync follows another by at least this much, so a
# burst is folded into few re-reads. The first event after a quiet spell is not held back: a task
# that turns healthy should get traffic at once (docs/benchmarks.md, healthy -> served).
COALESCE_SECONDS = 0.2
MAX_APP_RESYNCS = 25  # more dirty apps than this at once: one full resync is cheaper


class NotActive(Exception):
    """The bridge is passive: it must not write."""


class HostResolver:
    """Agent host name -> IPv4 address the load balancers can reach: the explicit map first,
    then DNS. DNS answers in 127.0.0.0/8 are refused (Debian maps a host's own name to
    127.0.1.1; nothing else can reach that), so such hosts need an explicit address."""

    def __init__(self, fixed: dict[str, str], ttl: float = 60.0, negative_ttl: float = 5.0):
        self.fixed = dict(fixed)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._cache: dict[str, tuple[str | None, float]] = {}

    def __call__(self, host: str) -> str | None:
        if host in self.fixed:
            return self.fixed[host]
        literal = parse_ipv4(host)
        if literal:
            return literal
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached and cached[1] > now:
            return cached[0]
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
            addresses = [i[4][0] for i in infos if not i[4][0].startswith("127.")]
            address = addresses[0] if addresses else None
        except OSError:
            address = None
        self._cache[host] = (address, now + (self.ttl if address else self.negative_ttl))
        return address


def _expected_node_meta(node: str) -> dict[str, str]:
    return {**NODE_META, "marathon-host": node[len(NODE_PREFIX) :]}


def _affected_apps(data: dict[str, Any]) -> set[str]:
    """App ids a deployment event is about: its steps' actions. Not ``plan.original/target``:
    Marathon puts the whole root group there, every app of the cluster."""
    apps: set[str] = set(a for a in data.get("affectedApps") or [] if isinstance(a, str))
    plan = data.get("plan") or {}
    steps = list(plan.get("steps") or [])
    if isinstance(data.get("currentStep"), dict):
        steps.append(data["currentStep"])
    for step in steps:
        for action in (step or {}).get("actions") or []:
            if isinstance(action, dict) and action.get("app"):
                apps.add(action["app"])
    return apps


class Bridge:
    def __init__(
        self,
        settings: Settings,
        *,
        marathon: MarathonClient | None = None,
        store: ConsulStore | None = None,
    ):
        self.settings = settings
        timeout = settings.request_timeout

        def marathon_client() -> MarathonClient:
            return MarathonClient(
                settings.marathon_url,
                timeout=(min(3.05, timeout), timeout),
                auth=settings.marathon_credentials,
            )

        def consul_store() -> ConsulStore:
            return ConsulStore(settings.consul_url, settings.consul_token, timeout=timeout)

        # Each thread gets its own client: requests sessions are not meant to be shared by
        # threads, and the stream and the lock's blocking queries hold a connection for long.
        self.marathon = marathon or marathon_client()
        self._events_client = marathon or marathon_client()
        self.store = store or consul_store()
        lock_store = store or consul_store()
        self.metrics = Metrics()
        self.stop_event = threading.Event()
        self.resolve = HostResolver(settings.host_addresses)
        self.leader = LeaderLock(
            lock_store,
            settings.lock_key,
            ttl=settings.session_ttl,
            lock_delay=settings.lock_delay,
            metrics=self.metrics,
            stop=self.stop_event,
            on_change=self._leadership_changed,
            max_backoff=settings.max_backoff,
        )
        # Freeing IPAM allocations whose Marathon task is gone (ipam.py), after full resyncs.
        self.ipam = (
            IpamReaper(
                self.store,
                self.metrics,
                prefix=settings.ipam_prefix,
                grace=settings.ipam_grace,
            )
            if settings.ipam_reconcile
            else None
        )
        # Counts leadership changes: the IPAM clocks start again in every new term.
        self._term = 0
        self._cond = threading.Condition()
        self._full_due = True
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        # What the worker believes Consul holds (refreshed from Consul by every full resync).
        self._registered: dict[str, Registration] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._skips: dict[str, tuple[str, str]] = {}  # app id -> (reason, detail)
        self._task_problems: dict[str, tuple[str, str, str]] = {}  # task -> (app, reason, text)
        # Registered tasks whose health Marathon does not know: task -> (app, monotonic time
        # this bridge first saw it unknown). Kept registered until --unknown-health-grace.
        self._unknown_since: dict[str, tuple[str, float]] = {}
        self.last_sync: float | None = None  # wall clock of the last full resync
        self._last_sync_mono: float | None = None
        self.marathon_ok = False
        self.consul_ok = False
        self.stream_connected = False
        self.started = time.time()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.leader.run, name="leader", daemon=True),
            threading.Thread(target=self._stream_loop, name="events", daemon=True),
            threading.Thread(target=self._work_loop, name="worker", daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        self.stop_event.set()
        with self._cond:
            self._cond.notify_all()

    def shutdown(self, threads: Iterable[threading.Thread]) -> None:
        """After stop(): let the worker finish its write, then give the lock up."""
        for thread in threads:
            if thread.name == "worker":
                thread.join(timeout=self.settings.request_timeout + 5)
        self.leader.shutdown()

    def _leadership_changed(self, active: bool) -> None:
        with self._cond:
            self._term += 1
            if active:
                # A new term: what Consul holds may have changed under another bridge.
                self._full_due = True
            self._dirty.clear()
            self._gone.clear()
            self._cond.notify_all()

    def request(
        self, *, full: bool = False, apps: Iterable[str] = (), gone: Iterable[str] = ()
    ) -> None:
        with self._cond:
            self._full_due = self._full_due or full
            self._dirty.update(apps)
            self._gone.update(gone)
            self._cond.notify_all()

    # ------------------------------------------------------------------ event stream

    def _stream_loop(self) -> None:
        backoff = Backoff(0.5, self.settings.max_backoff)
        while not self.stop_event.is_set():
            if not self.leader.active:
                self.stop_event.wait(0.5)  # a passive bridge does not load Marathon
                continue
            opened = time.monotonic()
            try:
                for event in self._events_client.events(
                    EVENT_TYPES,
                    read_timeout=self.settings.event_stream_timeout,
                    on_open=self._stream_opened,
                ):
                    self._on_event(event)
                    if self.stop_event.is_set() or not self.leader.active:
                        break
                else:
                    log.warning("Marathon closed the event stream; reconnecting")
            except MarathonError as exc:
                self.metrics.inc("errors", "marathon")
                # Health says so at once: the resync loop may not ask Marathon for a while.
                self.marathon_ok = False
                log.warning("event stream: %s", exc)
            except Exception:
                self.metrics.inc("errors", "internal")
                log.exception("event stream: unexpected error")
            self.stream_connected = False
            if self.stop_event.is_set():
                break
            if self.leader.active:
                self.metrics.inc("stream_reconnects")
            # A stream that lived a while reconnects at once; one that keeps failing or
            # closing right away (each open costs a full resync) backs off.
            if time.monotonic() - opened > 10:
                backoff.reset()
            self.stop_event.wait(backoff.next())

    def _stream_opened(self) -> None:
        self.stream_connected = True
        log.info("event stream attached to %s: full resync", self.settings.marathon_url)
        self.request(full=True)

    def _on_event(self, event: MarathonEvent) -> None:
        self.metrics.inc("events")
        data, kind = event.data, event.type
        apps: set[str] = set()
        gone: set[str] = set()
        full = False
        app_id = data.get("appId")
        if kind == "status_update_event":
            if data.get("taskStatus") in GONE_STATES and data.get("taskId"):
                gone.add(data["taskId"])
        elif kind == "health_status_changed_event":
            if data.get("alive") is False:
                gone.add(data.get("taskId") or data.get("instanceId") or "")
        elif kind == "unhealthy_task_kill_event":
            gone.add(data.get("taskId") or data.get("instanceId") or "")
        elif kind == "api_post_event":
            app_id = (data.get("appDefinition") or {}).get("id") or app_id
        elif kind.startswith("deployment_"):
            apps = _affected_apps(data)
            full = not apps
        if isinstance(app_id, str) and app_id:
            apps.add(app_id)
        gone.discard("")
        log.debug("event %s: apps %s, gone %s", kind, sorted(apps), sorted(gone))
        self.request(full=full, apps=apps, gone=gone)

    # ------------------------------------------------------------------ worker

    def _work_loop(self) -> None:
        backoff = Backoff(0.5, self.settings.max_backoff)
        next_full = 0.0
        last_resync = -COALESCE_SECONDS
        while not self.stop_event.is_set():
            with self._cond:
                while not self.stop_event.is_set():
                    now = time.monotonic()
                    if self.leader.active:
                        if now >= next_full:
                            self._full_due = True
                        self._dirty.update(self._unknown_expired(now))
                        if self._full_due or self._dirty or self._gone:
                            break
                        expiry = self._next_unknown_expiry()
                        timeout = min(1.0, next_full - now, (expiry or now + 1.0) - now)
                    else:
                        timeout = 0.5
                    self._cond.wait(timeout)
                if self.stop_event.is_set():
                    return
                burst = not self._full_due
            if burst:
                self.stop_event.wait(max(0.0, last_resync + COALESCE_SECONDS - time.monotonic()))
            last_resync = time.monotonic()
            with self._cond:
                full, apps, gone = self._full_due, self._dirty, self._gone
                self._full_due, self._dirty, self._gone = False, set(), set()
            full = full or len(apps) > MAX_APP_RESYNCS
            try:
                if gone:
                    self._remove_gone(gone)
                if full:
                    self._full_resync()
                    next_full = time.monotonic() + self.settings.resync_interval
                elif apps:
                    self._resync_apps(apps)
                backoff.reset()
            except NotActive:
                pass  # becoming active again starts with a full resync
            except LockLost as exc:
                self.metrics.inc("errors", "lock")
                self.leader.lost(str(exc))
            except (MarathonError, ConsulError, Exception) as exc:
                source = (
                    "marathon"
                    if isinstance(exc, MarathonError)
                    else "consul"
                    if isinstance(exc, ConsulError)
                    else "internal"
                )
                self.metrics.inc("errors", source)
                if source == "internal":
                    log.exception("resync failed")
                else:
                    log.warning("resync failed, retrying with a full resync: %s", exc)
                if source == "marathon":
                    self.marathon_ok = False
                elif source == "consul":
                    self.consul_ok = False
                # The cache may be wrong now (a half-done write, a Consul that lost its data):
                # the retry re-reads both sides.
                self.request(full=True)
                self.stop_event.wait(backoff.next())

    def _full_resync(self) -> None:
        started = time.monotonic()
        apps = self.marathon.list_apps(embed=["tasks"])
        self.marathon_ok = True
        snapshot = self.store.snapshot()
        self.consul_ok = True
        self._registered = dict(snapshot.services)
        self._nodes = dict(snapshot.nodes)
        desired: dict[str, Registration] = {}
        for app in apps:
            desired.update(self._plan(app).items())
        present = {a["id"] for a in apps}
        for app_id in [a for a in self._skips if a not in present]:
            del self._skips[app_id]
        for task_id in [t for t, p in self._task_problems.items() if p[0] not in present]:
            del self._task_problems[task_id]
        for task_id in [t for t, u in self._unknown_since.items() if u[0] not in present]:
            del self._unknown_since[task_id]
        self._converge(desired, dict(self._registered), full=True)
        self.metrics.inc("resyncs")
        self.last_sync, self._last_sync_mono = time.time(), time.monotonic()
        log.info(
            "full resync: %d apps, %d instances registered (%.2fs)",
            len(apps),
            len(self._registered),
            time.monotonic() - started,
        )
        if self.ipam is not None:
            self._reconcile_ipam(apps)

    def _reconcile_ipam(self, apps: list[dict]) -> None:
        """Free the IPAM allocations whose Marathon task is gone (ipam.py), against the task
        list of the resync just done. Its failures are its own: the catalog is written, so a
        Consul error here is logged and counted (``errors{source="ipam"}``) and the bridge goes
        on. Only a lost lock goes up, to make the bridge passive as for any write."""
        with self._cond:
            term = self._term
        session = self.leader.session_id
        if not self.leader.active or session is None:
            return
        task_ids = [
            task.get("id") or ""
            for app in apps
            for task in app.get("tasks") or []
            if isinstance(task, dict)
        ]
        try:
            self.ipam.run(task_ids, self.settings.lock_key, session, term)
        except LockLost:
            raise
        except ConsulError as exc:
            self.metrics.inc("errors", "ipam")
            self.ipam.failed(str(exc))
            level = logging.ERROR if isinstance(exc, ConsulDenied) else logging.WARNING
            log.log(level, "IPAM reconciliation skipped (nothing freed): %s", exc)
        except Exception as exc:  # noqa: BLE001 - the catalog side must not fail for it
            self.metrics.inc("errors", "ipam")
            self.ipam.failed(f"internal: {exc}")
            log.exception("IPAM reconciliation failed")

    def _resync_apps(self, app_ids: set[str]) -> None:
        for app_id in sorted(app_ids):
            # The list endpoint with an id filter (a substring match) embeds the tasks on every
            # Marathon version; what the single-app endpoint embeds by default has varied.
            found = self.marathon.list_apps(embed=["tasks"], id_contains=app_id)
            app = next((a for a in found if a.get("id") == app_id), None)
            self.marathon_ok = True
            desired = self._plan(app) if app else {}
            if app is None:
                self._skips.pop(app_id, None)
                for task_id in [t for t, p in self._task_problems.items() if p[0] == app_id]:
                    del self._task_problems[task_id]
                for task_id in [t for t, u in self._unknown_since.items() if u[0] == app_id]:
                    del self._unknown_since[task_id]
            actual = {k: r for k, r in self._registered.items() if r.app_id == app_id}
            self._converge(desired, actual, full=False)
            self.metrics.inc("app_resyncs")

    def _remove_gone(self, ids: set[str]) -> None:
        """Tasks Marathon reported dead, killed or unhealthy: out of Consul before re-reading
        anything. Marathon 1.4+ names instances, whose task ids extend the instance id."""
        doomed = {
            sid: reg
            for sid, reg in self._registered.items()
            if sid in ids or any(sid.startswith(i + ".") for i in ids)
        }
        if doomed:
            self._converge({}, doomed, full=False)

    def _plan(self, app: dict) -> dict[str, Registration]:
        plan = desired_registrations(
            app, self.resolve, self.settings.default_env, self.settings.environments
        )
        self._note(plan)
        desired = {r.service_id: r for r in plan.registrations}
        # A name that fails to resolve for a moment must not take a live instance away.
        for task_id, (reason, _) in plan.task_problems.items():
            if reason == UNRESOLVED_HOST and task_id in self._registered:
                desired[task_id] = self._registered[task_id]
        self._keep_unknown(plan, desired)
        return desired

    def _keep_unknown(self, plan: AppPlan, desired: dict[str, Registration]) -> None:
        """A registered task whose health Marathon does not know is not unhealthy: Marathon
        forgets every result when it restarts or changes leader, and knows it again only
        after the next check. Deregistering then would empty the load balancers of healthy
        tasks; so the instance stays as it is, for up to ``unknown_health_grace`` seconds
        from when this bridge first saw it unknown. A dead result, a terminal or killing state
        or the task's end still take it out at once; a task never registered waits for its
        first healthy result."""
        now = time.monotonic()
        grace = self.settings.unknown_health_grace
        for task_id in [t for t, u in self._unknown_since.items() if u[0] == plan.app_id]:
            if task_id not in plan.health_unknown:
                del self._unknown_since[task_id]  # known again (or gone): the plan decides
        for task_id in sorted(plan.health_unknown):
            held = self._registered.get(task_id)
            if held is None:
                continue
            since = self._unknown_since.setdefault(task_id, (plan.app_id, now))[1]
            if now - since < grace:
                if since == now:
                    log.info(
                        "task %s of %s: health unknown (Marathon restarted?); keeping its "
                        "instance for up to %gs",
                        task_id,
                        plan.app_id,
                        grace,
                    )
                desired[task_id] = held
            elif task_id not in desired:
                log.warning(
                    "task %s of %s: health still unknown after %gs; deregistering it",
                    task_id,
                    plan.app_id,
                    grace,
                )

    def _unknown_expired(self, now: float) -> set[str]:
        """Apps with an instance kept for unknown health whose grace has run out: re-read them
        then, not only at the next full resync."""
        grace = self.settings.unknown_health_grace
        return {
            app_id
            for task_id, (app_id, since) in list(self._unknown_since.items())
            if now - since >= grace and task_id in self._registered
        }

    def _next_unknown_expiry(self) -> float | None:
        grace = self.settings.unknown_health_grace
        times = [
            since + grace
            for task_id, (_, since) in list(self._unknown_since.items())
            if task_id in self._registered
        ]
        return min(times) if times else None

    def _note(self, plan: AppPlan) -> None:
        """Log and count skipped apps and tasks once per reason, not on every resync."""
        app_id = plan.app_id
        before = self._skips.get(app_id)
        if plan.skip_reason:
            now = (plan.skip_reason, plan.skip_detail)
            if before != now:
                self.metrics.inc("skipped_apps", plan.skip_reason)
                log.warning("%s", plan.skip_detail)
            self._skips[app_id] = now
        elif before:
            del self._skips[app_id]
            log.info("app %s is registrable again", app_id)
        for task_id in [t for t, p in self._task_problems.items() if p[0] == app_id]:
            if task_id not in plan.task_problems:
                del self._task_problems[task_id]
        for task_id, (reason, text) in plan.task_problems.items():
            if self._task_problems.get(task_id, (None, None))[1] != reason:
                self.metrics.inc("skipped_tasks", reason)
                log.warning("%s", text)
            self._task_problems[task_id] = (app_id, reason, text)

    def _converge(
        self, desired: dict[str, Registration], actual: dict[str, Registration], *, full: bool
    ) -> None:
        """Write what differs between ``desired`` and ``actual`` (both for the same scope).
        Nodes without any service left are deleted on full resyncs only (fresh node data)."""
        nodes = self._nodes
        refused = {
            sid for sid, reg in desired.items() if reg.node in nodes and not nodes[reg.node].owned
        }
        for sid in refused:
            reg = desired[sid]
            text = (
                f"task {sid} of {reg.app_id}: node {reg.node} exists and is not owned by the "
                "bridge; not touching it"
            )
            if self._task_problems.get(sid, (None, None))[1] != "foreign_node":
                self.metrics.inc("skipped_tasks", "foreign_node")
                log.error("%s", text)
            self._task_problems[sid] = (reg.app_id, "foreign_node", text)
        to_set = [
            reg
            for sid, reg in sorted(desired.items())
            if sid not in refused and actual.get(sid) != reg
        ]
        to_delete = [reg for sid, reg in sorted(actual.items()) if sid not in desired]
        ready = {
            name: info.address
            for name, info in nodes.items()
            if info.owned and info.meta == _expected_node_meta(name)
        }
        # Registrations first, deregistrations after, node deletions last: a write larger than
        # one transaction is split (ConsulStore.apply), and in this order a load balancer
        # reading between two chunks sees every instance of before or of after, never fewer
        # than the smaller of the two.
        ops = registration_ops(to_set, ready)
        ops += [op_service_delete(reg) for reg in to_delete]
        empty_nodes: list[NodeInfo] = []
        if full:
            remaining = collections.Counter(r.node for r in self._registered.values())
            for reg in to_delete:
                remaining[reg.node] -= 1
            for reg in to_set:
                if reg.service_id not in self._registered:
                    remaining[reg.node] += 1
            empty_nodes = [
                info
                for name, info in nodes.items()
                if info.owned and remaining[name] <= 0 and not info.foreign_services
            ]
            ops += [op_node_delete(info.name, info.modify_index) for info in empty_nodes]
        if not ops:
            return
        if not self.leader.active or self.leader.session_id is None:
            raise NotActive()
        self.store.apply(ops, self.settings.lock_key, self.leader.session_id)
        self.consul_ok = True
        for reg in to_delete:
            self._registered.pop(reg.service_id, None)
            self.metrics.inc("deregistrations")
            log.info(
                "deregistered %s instance %s (app %s) from %s",
                reg.service,
                reg.service_id,
                reg.app_id,
                reg.node,
            )
        for reg in to_set:
            self._registered[reg.service_id] = reg
            if reg.node not in nodes or not nodes[reg.node].owned:
                nodes[reg.node] = NodeInfo(reg.node, reg.node_address, reg.node_meta(), 0, True)
            else:
                nodes[reg.node].address = reg.node_address
                nodes[reg.node].meta = reg.node_meta()
            self.metrics.inc("registrations")
            log.info(
                "registered %s instance %s (app %s) at %s:%d on %s, tags %s",
                reg.service,
                reg.service_id,
                reg.app_id,
                reg.address,
                reg.port,
                reg.node,
                ",".join(reg.tags),
            )
        for info in empty_nodes:
            nodes.pop(info.name, None)
            log.info("deleted the empty node %s", info.name)

    # ------------------------------------------------------------------ status

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for GET /health. 503 only when this bridge is active but its
        last full resync is older than three intervals: it is failing at its job."""
        active = self.leader.active
        age = time.monotonic() - self._last_sync_mono if self._last_sync_mono else None
        limit = 3 * self.settings.resync_interval + 10
        stale = active and (
            (age is not None and age > limit)
            or (age is None and time.time() - self.started > limit)
        )
        status = "stale" if stale else "active" if active else "passive"
        skipped = collections.Counter(reason for reason, _ in list(self._skips.values()))
        body = {
            "status": status,
            "active": active,
            "last_sync": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_sync))
                if self.last_sync
                else None
            ),
            "last_sync_age_seconds": round(age, 3) if age is not None else None,
            "event_stream_connected": self.stream_connected,
            "marathon": {"url": self.settings.marathon_url, "ok": self.marathon_ok},
            "consul": {"url": self.settings.consul_url, "ok": self.consul_ok},
            "registered_instances": len(self._registered) if active else None,
            "skipped_apps": dict(sorted(skipped.items())),
            "ipam": self.ipam.status(active) if self.ipam else {"enabled": False},
            "counters": self.metrics.as_json(),
        }
        return (503 if stale else 200), body

    def prometheus(self) -> str:
        skipped = collections.Counter(reason for reason, _ in list(self._skips.values()))
        age = time.monotonic() - self._last_sync_mono if self._last_sync_mono else -1
        gauges: dict[str, tuple[str, Any]] = {
            "active": ("1 while this bridge holds the lock and writes", float(self.leader.active)),
            "registered_instances": (
                "Service instances the bridge holds in Consul (as of its last write)",
                float(len(self._registered)),
            ),
            "apps_skipped": ("Apps not registered now, by reason", dict(skipped)),
            "last_sync_age_seconds": (
                "Seconds since the last full resync (-1: none yet)",
                float(age),
            ),
            "event_stream_connected": (
                "1 while the Marathon event stream is attached",
                float(self.stream_connected),
            ),
        }
        if self.ipam is not None:
            gauges["ipam_missing"] = (
                "IPAM allocations whose Marathon task is gone, waiting out the grace",
                float(self.ipam.missing if self.leader.active else 0),
            )
        return self.metrics.prometheus(gauges)
