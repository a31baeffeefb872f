"""The release record: which steps a release has, which are done, and whether a new run may
start, continue or must be refused.

One record per app (kept by the orchestration in Consul KV, ``saltyard/release/<app>/record``,
so every master sees it). The steps of a release, in order: ``build``, a deployment per
pre-production environment (``deploy-fat``, ``deploy-uat``, from the inventory's promotion
order), ``promote``, one ``canary-<n>`` per canary step of the plan, and ``rollout``. A run:

- with no record, or after a finished one (rolled out, rolled back, or stopped by a failed
  build), starts a new release;
- with a release in progress for the same ref and version, continues at its first step that is
  not done (a killed or failed run is resumed by running it again);
- with a finished release of the same ref and version, does nothing (but a release stopped by a
  failed build is started afresh, its build tried again);
- with a release in progress for another ref or version, is refused, naming both.

Nothing here talks to Consul, Marathon or Salt: the orchestration loads and stores the record
(``to_json``/``from_json``) and does the steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from saltyard.release.plan import AppRelease

# A step is pending, running, done or failed; a whole release is running, rolled out, rolled
# back (a canary failed its gate), or stopped (its build failed: nothing was deployed).
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
ROLLED_OUT, ROLLED_BACK, STOPPED = "rolled-out", "rolled-back", "stopped"
FINISHED = (ROLLED_OUT, ROLLED_BACK, STOPPED)


class ReleaseRefused(Exception):
    """A run that must not start; the message says why and what to do."""


def step_names(plan: AppRelease, environments: list[str]) -> list[str]:
    """The steps of a release of ``plan``. ``environments`` is the inventory's promotion
    order; every one but the last (production) gets a deployment and a smoke test."""
    if not environments:
        raise ValueError("the inventory has no environments to release to")
    names = ["build"]
    names += [f"deploy-{env}" for env in environments[:-1]]
    names.append("promote")
    names += [f"canary-{n}" for n in range(1, len(plan.steps) + 1)]
    names.append("rollout")
    return names


@dataclass
class StepRecord:
    name: str
    state: str = PENDING
    started: float | None = None
    ended: float | None = None
    # What the step found or made (a sha, a digest, gate figures), and why it failed.
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Record:
    app: str
    ref: str
    version: str
    outcome: str = RUNNING
    steps: list[StepRecord] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None

    @classmethod
    def new(
        cls, plan: AppRelease, environments: list[str], ref: str, version: str, now: float
    ) -> Record:
        return cls(
            app=plan.name,
            ref=ref,
            version=version,
            steps=[StepRecord(name) for name in step_names(plan, environments)],
            started=now,
        )

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"release of {self.app} has no step {name!r}")

    def next_step(self) -> StepRecord | None:
        """The first step that is not done; None once every step is."""
        return next((s for s in self.steps if s.state != DONE), None)

    def start(self, name: str, now: float) -> None:
        step = self._expect_next(name)
        step.state, step.started, step.ended = RUNNING, now, None

    def finish(self, name: str, now: float, **detail: Any) -> None:
        step = self._expect_next(name)
        step.state, step.ended = DONE, now
        step.detail.update(detail)
        if self.next_step() is None:
            self.outcome, self.ended = ROLLED_OUT, now

    def fail(self, name: str, now: float, reason: str, **detail: Any) -> None:
        """A step that failed; the release stays running (a re-run retries the step)."""
        step = self._expect_next(name)
        step.state, step.ended = FAILED, now
        step.detail.update(detail, reason=reason)

    def stop(self, name: str, now: float, reason: str, **detail: Any) -> None:
        """The build, or a smoke test before production, failed: the release is over and
        production is untouched."""
        self.fail(name, now, reason, **detail)
        self.outcome, self.ended = STOPPED, now

    def roll_back(self, name: str, now: float, reason: str, **detail: Any) -> None:
        """A canary step whose gate failed: the release is over, the stable app untouched."""
        self.fail(name, now, reason, **detail)
        self.outcome, self.ended = ROLLED_BACK, now

    def _expect_next(self, name: str) -> StepRecord:
        if self.outcome in FINISHED:
            raise ValueError(f"release of {self.app} {self.version} is {self.outcome} already")
        nxt = self.next_step()
        if nxt is None or nxt.name != name:
            raise ValueError(
                f"release of {self.app}: step {name!r} is not the next one "
                f"({nxt.name if nxt else 'none left'!r})"
            )
        return nxt

    def to_json(self) -> str:
        return json.dumps(
            {
                "app": self.app,
                "ref": self.ref,
                "version": self.version,
                "outcome": self.outcome,
                "started": self.started,
                "ended": self.ended,
                "steps": [vars(s) for s in self.steps],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(
            app=data["app"],
            ref=data["ref"],
            version=data["version"],
            outcome=data["outcome"],
            started=data.get("started"),
            ended=data.get("ended"),
            steps=[StepRecord(**s) for s in data["steps"]],
        )


def begin(
    existing: Record | None,
    plan: AppRelease,
    environments: list[str],
    ref: str,
    version: str,
    now: float,
) -> tuple[Record, bool]:
    """The record a run works on, and whether it has anything to do. Raises ReleaseRefused
    when another release of the app is in progress."""
    same = existing is not None and existing.ref == ref and existing.version == version
    # A stopped release (its build failed) deployed nothing: any run starts afresh, the same
    # one included (its build is tried again).
    if (
        existing is None
        or (existing.outcome in FINISHED and not same)
        or (existing.outcome == STOPPED)
    ):
        return Record.new(plan, environments, ref, version, now), True
    if same:
        return existing, existing.outcome == RUNNING
    step = existing.next_step()
    raise ReleaseRefused(
        f"app {plan.name}: the release of version {existing.version} (ref {existing.ref}) is "
        f"in progress at step {step.name if step else '?'}; run it again to finish it, or roll "
        f"it back, before releasing version {version} (ref {ref})"
    )
