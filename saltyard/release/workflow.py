"""One run of the release workflow (``orch.release``): a git ref to production, step by step.

The steps (saltyard/release/record.py): ``build`` on the build node, ``deploy-<env>`` with a
smoke test through a load balancer for every environment before production, ``promote`` (the
sha's image tagged as the version, immutable), ``canary-<n>`` for every step of the gray release
in production, and ``rollout``. The run holds the app's release lock (lock.py) throughout and
keeps the record in Consul KV (store.py) after every change, so a run that dies is resumed by
running it again, from the first step that is not done.

What the run needs from Salt comes through ``Minions`` (execution modules and single states on
the cluster's nodes) and ``fire`` (Salt events), which the runner ``_runners/saltyard_release.py``
provides; nothing here imports Salt.

A canary step: the canary app (``/<prod>/<app>-canary``, the new version) is running; the share
goes to Consul, which every lb node's consul-template turns into nginx's split; once every lb
node serves it (``release_traffic.share``) the run waits the step's window, then asks every lb
node for the window's figures per
group (``release_traffic.window``), adds them up (``traffic.merge``) and lets the gate decide
(gate.py). Pass: the next step. Fail, or inconclusive with nothing left to repeat: the share goes
to 0 at once, the canary is removed (its tasks drain: Marathon's kill grace period), the stable
app is never touched, and the release is rolled back with the reason in the record and the
event. The first release of an app has no stable group to compare with: its canary steps are
recorded as skipped and the rollout deploys it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from saltyard.clients.consul import ConsulClient
from saltyard.release import apps, gate, lock, record, smoke, store, traffic
from saltyard.release.plan import AppRelease, check_version

# After the share is written, the run asks every lb node until its nginx serves it
# (release_traffic.share: consul-template renders and nginx reloads, about half a second,
# docs/benchmarks.md); a window starts only then. An lb node that does not get there in
# SHARE_TIMEOUT seconds fails the step with the share back at 0.
SHARE_TIMEOUT = 30.0
SHARE_POLL_SECONDS = 0.2
# A removed canary's tasks get Marathon's kill grace period to drain (apps.KILL_GRACE_SECONDS);
# the lb stopped sending them new requests when the share went to 0.
DEPLOY_TIMEOUT = 600
SMOKE_TIMEOUT = 120
CANARY_INSTANCES = 1


class StepFailed(Exception):
    """A step could not be done; the message names the step, the node and the reason."""


class Minions(Protocol):
    def call(self, node: str, fun: str, *args: Any, timeout: float = ..., **kwargs: Any) -> Any:
        """An execution module function on one node; its return, or StepFailed."""

    def call_many(self, nodes: list[str], fun: str, *args: Any, timeout: float = ...) -> dict:
        """The same function on several nodes at once: {node: return or error text}."""

    def state(self, node: str, fun: str, name: str, *, test: bool = False, **kwargs: Any) -> dict:
        """One state (``state.single``) on a node: its result dict, or StepFailed."""


@dataclass(frozen=True)
class Site:
    """What the run needs to know of the cluster (from the master's pillar)."""

    environments: list[str]  # promotion order; the last is production
    domain: str
    build_node: str
    marathon_node: str
    lb_nodes: list[str]
    lb_url: str  # http://<an lb node>:<port>, for the smoke tests
    registry_host: str  # <VIP>:<port>

    @property
    def production(self) -> str:
        return self.environments[-1]


@dataclass(frozen=True)
class Outcome:
    outcome: str  # rolled-out, rolled-back, nothing-to-do
    record: record.Record
    message: str


class Release:
    def __init__(
        self,
        plan: AppRelease,
        site: Site,
        minions: Minions,
        consul: ConsulClient,
        fire: Callable[[str, dict], None],
        *,
        progress: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.site = site
        self.minions = minions
        self.consul = consul
        self.fire = fire
        self.progress = progress
        self.clock = clock
        self.sleep = sleep
        self.record: record.Record | None = None
        self.index = 0
        self.lock: lock.ReleaseLock | None = None
        self.deploy_seconds = 0.0

    # --- the run --------------------------------------------------------------------------
    def run(self, ref: str, version: str) -> Outcome:
        version = check_version(version)
        app = self.plan.name
        with lock.ReleaseLock(self.consul, app, what=f"release {version} (ref {ref})") as held:
            self.lock = held
            existing, self.index = store.load_record(self.consul, app)
            self.record, todo = record.begin(
                existing, self.plan, self.site.environments, ref, version, self.clock()
            )
            if not todo:
                message = f"release of {app} {version} (ref {ref}) is {self.record.outcome}"
                return Outcome("nothing-to-do", self.record, message + ": nothing to do")
            if self.record is not existing:
                self._refuse_a_released_version(version)
            self._save()
            while (step := self.record.next_step()) is not None:
                self._do(step.name)
                if self.record.outcome == record.ROLLED_BACK:
                    failed = self.record.step(step.name)
                    return Outcome(
                        record.ROLLED_BACK,
                        self.record,
                        f"release of {app} {version} rolled back at {step.name}: "
                        f"{failed.detail.get('reason')}",
                    )
        return Outcome(
            record.ROLLED_OUT, self.record, f"release of {app} {version} is in production"
        )

    def predict(self, ref: str, version: str) -> dict:
        """What ``run(ref, version)`` would do, changing nothing (the orchestration's test
        mode): where it would start, or why it would be refused, each step to do, and for each
        deployment the Marathon diff (``marathon_application.present`` in test mode) when its
        image is in the registry already."""
        version = check_version(version)
        app, env = self.plan.name, self.site.production
        existing, _ = store.load_record(self.consul, app)
        current, todo = record.begin(
            existing, self.plan, self.site.environments, ref, version, self.clock()
        )
        if not todo:
            return {"message": f"release of {app} {version} is {current.outcome}", "steps": []}
        if current is not existing:
            self._refuse_a_released_version(version)
        built = current.step("build")
        sha = built.detail.get("sha") if built.state == record.DONE else None
        sha = sha or self.minions.call(
            self.site.build_node, "release_build.resolve", self.plan.git, ref
        )
        domain, instances = self.site.domain, self.plan.instances
        lines = []
        for step in current.steps:
            name = step.name
            if step.state == record.DONE:
                lines.append(f"{name}: done")
                continue
            if name == "build":
                what = (
                    f"build {self.plan.git} at {ref} ({sha}) on {self.site.build_node}, push "
                    f"{self._image(sha)} (reused if the registry has it)"
                )
            elif name.startswith("deploy-"):
                target = name.removeprefix("deploy-")
                what = (
                    f"/{target}/{app} on {sha[:12]} ({instances[target]} instances), then "
                    f"{app}.{target}.{domain} must answer {version}"
                    + self._predicted(target, sha, version)
                )
            elif name == "promote":
                what = f"tag {self.plan.image}:{sha[:12]} as {self.plan.image}:{version}"
            elif name.startswith("canary-"):
                canary = self.plan.steps[int(name.removeprefix("canary-")) - 1]
                what = (
                    f"{canary.share:g} % of {app}.{env}.{domain} to /{env}/{app}-canary for "
                    f"{canary.window} s, then the gate {self.plan.gate}"
                )
            else:
                what = (
                    f"/{env}/{app} on {version} ({instances[env]} instances, rolling), the "
                    f"canary's share to 0 and /{env}/{app}-canary removed"
                    + self._predicted(env, version, version)
                )
            lines.append(f"{name}: to do: {what}")
        verb = "resumes" if current is existing else "starts"
        return {"message": f"release of {app} {version} (ref {ref}) {verb}", "steps": lines}

    def _predicted(self, env: str, tag: str, version: str) -> str:
        """The Marathon diff of deploying ``<image>:<tag>`` to ``env``, when the registry has
        that image (Marathon refuses an app whose image is missing, so no diff before)."""
        if not self.minions.call(self.site.build_node, "registry.exists", self.plan.image, tag):
            return f"; Marathon diff once {self._image(tag)} is in the registry"
        definition = apps.definition(self.plan, env, self._image(tag), version)
        predicted = self.minions.state(
            self.site.marathon_node,
            "marathon_application.present",
            definition["id"],
            app=definition,
            test=True,
        )
        return f"; Marathon: {predicted.get('comment')} {json.dumps(predicted.get('changes'))}"

    def _do(self, name: str) -> None:
        assert self.record is not None
        if self.lock is not None and self.lock.lost.is_set():
            raise StepFailed(
                f"{name}: the release lock of {self.plan.name} was lost (Consul session gone); "
                "run the release again to continue"
            )
        self.record.start(name, self.clock())
        # Seconds of the step spent in Marathon deployments (benchmarks/release.py counts the
        # run's own overhead without them).
        self.deploy_seconds = 0.0
        self._save()
        self._event(name, "started", {})
        self.progress(f"{self.plan.name} {self.record.version}: {name}")
        try:
            if name == "build":
                detail = self._build()
            elif name.startswith("deploy-"):
                detail = self._deploy(name.removeprefix("deploy-"))
            elif name == "promote":
                detail = self._promote()
            elif name.startswith("canary-"):
                detail = self._canary(int(name.removeprefix("canary-")))
            elif name == "rollout":
                detail = self._rollout()
            else:  # pragma: no cover - record.step_names makes only these
                raise StepFailed(f"unknown step {name!r}")
        except (StepFailed, smoke.SmokeFailed, store.StoreError) as exc:
            if name == "build" or (
                name.startswith("deploy-") and isinstance(exc, smoke.SmokeFailed)
            ):
                # Production untouched: the release is over (record.STOPPED) and blocks no
                # other. A build that fails, or a version that does not answer as itself in
                # FAT or UAT, would fail the same way on every re-run.
                self.record.stop(name, self.clock(), str(exc))
                outcome = record.STOPPED
            else:
                # A re-run retries the step.
                self.record.fail(name, self.clock(), str(exc))
                outcome = "failed"
            self._save()
            self._event(name, outcome, {"reason": str(exc)})
            raise StepFailed(
                f"release of {self.plan.name} {self.record.version}: {name} {outcome}: {exc}"
            ) from None
        if self.deploy_seconds:
            detail["deploy_seconds"] = round(self.deploy_seconds, 3)
        if detail.get("rolled_back"):
            reason = detail.pop("reason")
            self.record.roll_back(name, self.clock(), reason, **detail)
            self._save()
            self._event(name, "rolled-back", dict(detail, reason=reason))
            return
        self.record.finish(name, self.clock(), **detail)
        self._save()
        self._event(name, "skipped" if detail.get("skipped") else "done", detail)

    def _refuse_a_released_version(self, version: str) -> None:
        """A new release of a version the registry already has is refused before anything
        changes: a release tag names one build for ever (promote would refuse it later, after
        FAT and UAT)."""
        tag = f"{self.plan.image}:{version}"
        if self.minions.call(self.site.build_node, "registry.exists", self.plan.image, version):
            digest = self.minions.call(
                self.site.build_node, "registry.digest", self.plan.image, version
            )
            raise record.ReleaseRefused(
                f"version {version} of {self.plan.name} was released before: {tag} names "
                f"{digest} in the registry, and a release tag is never moved; release a new "
                "version"
            )

    def _save(self) -> None:
        assert self.record is not None
        self.index = store.save_record(self.consul, self.record, self.index)

    def _event(self, step: str, outcome: str, data: dict) -> None:
        assert self.record is not None
        self.fire(
            f"saltyard/release/{self.plan.name}/{step}/{outcome}",
            dict(data, app=self.plan.name, ref=self.record.ref, version=self.record.version),
        )

    # --- images ---------------------------------------------------------------------------
    def _image(self, tag: str) -> str:
        return f"{self.site.registry_host}/{self.plan.image}:{tag}"

    def _built(self) -> dict:
        assert self.record is not None
        return self.record.step("build").detail

    # --- steps ----------------------------------------------------------------------------
    def _build(self) -> dict:
        assert self.record is not None
        base = f"{self.site.registry_host}/{self.plan.base}" if self.plan.base else ""
        built = self.minions.call(
            self.site.build_node,
            "release_build.image",
            self.plan.git,
            self.record.ref,
            self.plan.image,
            base,
            timeout=DEPLOY_TIMEOUT,
        )
        if not isinstance(built, dict) or not built.get("sha"):
            raise StepFailed(f"the build on {self.site.build_node} answered {built!r}")
        return {k: built[k] for k in ("sha", "image", "digest", "reused")}

    def _present(self, app_id: str, definition: dict) -> dict:
        started = self.clock()
        try:
            return self.minions.state(
                self.site.marathon_node,
                "marathon_application.present",
                app_id,
                app=definition,
                timeout=DEPLOY_TIMEOUT,
            )
        finally:
            self.deploy_seconds += self.clock() - started

    def _absent(self, app_id: str) -> dict:
        started = self.clock()
        try:
            return self.minions.state(
                self.site.marathon_node,
                "marathon_application.absent",
                app_id,
                timeout=DEPLOY_TIMEOUT,
            )
        finally:
            self.deploy_seconds += self.clock() - started

    def _smoke(self, env: str) -> int:
        assert self.record is not None
        return smoke.smoke(
            self.site.lb_url,
            f"{self.plan.name}.{env}.{self.site.domain}",
            self.record.version,
            timeout=SMOKE_TIMEOUT,
        )

    def _deploy(self, env: str) -> dict:
        assert self.record is not None
        image = self._image(self._built()["sha"])
        definition = apps.definition(self.plan, env, image, self.record.version)
        self._present(definition["id"], definition)
        requests = self._smoke(env)
        return {"app": definition["id"], "image": image, "smoke_requests": requests}

    def _promote(self) -> dict:
        assert self.record is not None
        built = self._built()
        self.minions.state(
            self.site.build_node,
            "registry_image.tagged",
            f"{self.plan.image}:{self.record.version}",
            source=f"{self.plan.image}:{built['sha']}",
            immutable=True,
        )
        digest = self.minions.call(
            self.site.build_node, "registry.digest", self.plan.image, self.record.version
        )
        if digest != built["digest"]:
            raise StepFailed(
                f"{self.plan.image}:{self.record.version} names {digest}, not the build's "
                f"{built['digest']}"
            )
        return {"image": self._image(self.record.version), "digest": digest}

    def _stable_exists(self) -> bool:
        stable = apps.app_id(self.plan.name, self.site.production)
        return bool(self.minions.call(self.site.marathon_node, "marathon_api.exists", stable))

    def _canary(self, number: int) -> dict:
        assert self.record is not None
        env = self.site.production
        step = self.plan.steps[number - 1]
        if not self._stable_exists():
            return {
                "skipped": f"no stable app {apps.app_id(self.plan.name, env)} to compare with: "
                "the first release goes straight to the rollout"
            }
        canary_id = apps.app_id(self.plan.name, env, apps.CANARY)
        definition = apps.definition(
            self.plan,
            env,
            self._image(self.record.version),
            self.record.version,
            track=apps.CANARY,
            instances=CANARY_INSTANCES,
        )
        self._present(canary_id, definition)
        store.set_share(self.consul, self.plan.name, env, step.share)
        self._await_share(env, step.share)
        windows = []
        for attempt in range(1 + self.plan.repeat_limit):
            verdict, window = self._window(env, step.window)
            windows.append(window)
            if verdict.outcome == gate.PASS:
                return {"share": step.share, "verdict": verdict.describe(), "windows": windows}
            if verdict.outcome == gate.FAIL or self.plan.inconclusive == "fail":
                break
            if attempt < self.plan.repeat_limit:
                self.progress(f"{canary_id}: {verdict.describe()}; the window again")
        return self._roll_back(number, verdict, windows)

    def _await_share(self, env: str, percent: float) -> None:
        """Return once every lb node's nginx serves ``percent`` to the canary. An lb node that
        does not within SHARE_TIMEOUT (consul-template stopped, a render nginx refused) fails
        the step, with the share set back to 0 so that no lb sends the canary unjudged
        traffic; the message names each node and what it serves."""
        deadline = self.clock() + SHARE_TIMEOUT
        while True:
            answers = self.minions.call_many(
                self.site.lb_nodes, "release_traffic.share", self.plan.name, env
            )
            behind = {
                node: answers.get(node, "no answer")
                for node in self.site.lb_nodes
                if not _serves(answers.get(node), percent)
            }
            if not behind:
                return
            if self.clock() >= deadline:
                store.set_share(self.consul, self.plan.name, env, 0)
                said = "; ".join(f"{node}: {str(what)[:200]}" for node, what in behind.items())
                raise StepFailed(
                    f"lb node(s) {sorted(behind)} did not serve the canary share {percent:g} % "
                    f"within {SHARE_TIMEOUT:g} s ({said}); the share is back at 0"
                )
            self.sleep(SHARE_POLL_SECONDS)

    def _window(self, env: str, seconds: int) -> tuple[gate.Verdict, dict]:
        start = self.clock()
        self.sleep(seconds)
        end = self.clock()
        answers = self.minions.call_many(
            self.site.lb_nodes, "release_traffic.window", self.plan.name, env, start, end
        )
        try:
            figures = traffic.merge(answers, self.site.lb_nodes)
        except traffic.IncompleteWindow as exc:
            verdict = gate.Verdict(gate.INCONCLUSIVE, (str(exc),), {})
        else:
            verdict = gate.decide(figures["canary"], figures["stable"], self.plan.gate)
        window = {"start": start, "end": end, "verdict": verdict.describe(), **verdict.figures}
        self.progress(f"{self.plan.name} window {start:.0f}-{end:.0f}: {verdict.describe()}")
        return verdict, window

    def _roll_back(self, number: int, verdict: gate.Verdict, windows: list[dict]) -> dict:
        """The gate said no: share 0 first (the lb stops sending the canary requests within
        about a second), then the canary goes; the stable app is left as it is."""
        env = self.site.production
        store.set_share(self.consul, self.plan.name, env, 0)
        self._absent(apps.app_id(self.plan.name, env, apps.CANARY))
        return {
            "rolled_back": True,
            "reason": f"canary step {number} ({self.plan.steps[number - 1].share:g} %): "
            + verdict.describe(),
            "windows": windows,
        }

    def _rollout(self) -> dict:
        """The stable app on the new version (a rolling upgrade that never goes below full
        healthy capacity), then the canary's share back to 0 and the canary removed."""
        assert self.record is not None
        env = self.site.production
        image = self._image(self.record.version)
        definition = apps.definition(self.plan, env, image, self.record.version)
        self._present(definition["id"], definition)
        store.set_share(self.consul, self.plan.name, env, 0)
        self._absent(apps.app_id(self.plan.name, env, apps.CANARY))
        requests = self._smoke(env)
        return {"app": definition["id"], "image": image, "smoke_requests": requests}


def _serves(answer: Any, percent: float) -> bool:
    """An lb node's ``release_traffic.share`` answer says its nginx serves ``percent``."""
    return (
        isinstance(answer, dict)
        and bool(answer.get("applied"))
        and isinstance(answer.get("share"), int | float)
        and abs(float(answer["share"]) - float(percent)) < 0.005
    )
