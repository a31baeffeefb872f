"""An application's release data (pillar ``release:apps:<app>``), checked before a release starts.

Every refusal names the pillar path and the bad value, so an operator can fix the file without
reading code. ``load_app`` returns the checked data as ``AppRelease``; nothing here talks to a
service.

    release:
      apps:
        hello:
          git: git://172.30.0.10/hello.git      # where the build node clones the ref from
          image: saltyard/hello                 # repository in the cluster registry
          base: saltyard/base:bookworm          # the Dockerfile's BASE, in the cluster registry
          port: 8000                            # the container port
          health: {path: /health}
          instances: {fat: 1, uat: 1, prod: 3}  # every environment of the inventory
          resources: {cpus: 0.1, mem: 64}
          canary:
            steps:                              # traffic share (percent) and window (seconds)
              - {share: 5, window: 60}
              - {share: 25, window: 60}
              - {share: 50, window: 60}
            gate: {max_5xx_share: 0.01, p99_ms: 500, min_requests: 100, margin: 0.25}
            inconclusive: fail                  # fail, or repeat the window (repeat_limit times)
            repeat_limit: 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from saltyard.release.gate import Gate

# Docker's tag grammar: up to 128 word characters, dots and dashes, not starting with . or -.
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A repository path in the registry: lower-case components separated by slashes.
REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
INCONCLUSIVE_ACTIONS = ("fail", "repeat")
MAX_WINDOW_SECONDS = 3600


class PlanError(ValueError):
    """Release data that cannot be used; the message names the pillar path and the value."""


@dataclass(frozen=True)
class Step:
    share: float  # percent of the app's traffic for the canary
    window: int  # seconds


@dataclass(frozen=True)
class AppRelease:
    name: str
    git: str
    image: str
    port: int
    health_path: str
    instances: dict[str, int]
    cpus: float
    mem: int
    steps: tuple[Step, ...]
    gate: Gate
    inconclusive: str
    repeat_limit: int
    base: str | None = None  # <repository>:<tag> in the cluster registry, the build arg BASE


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _number(where: str, value: Any, low: float, high: float, *, integer: bool = False) -> float:
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise PlanError(f"pillar {where} is {_shown(value)}: it must be {kind}")
    if not low <= value <= high:
        raise PlanError(f"pillar {where} is {value}: it must be from {low:g} to {high:g}")
    return value


def _mapping(where: str, value: Any, required: tuple[str, ...], known: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise PlanError(f"pillar {where} is {_shown(value)}: it must be a mapping")
    unknown = sorted(set(value) - set(required) - set(known))
    if unknown:
        raise PlanError(
            f"pillar {where}:{unknown[0]} is not a known key "
            f"(known: {', '.join(sorted(required + known))})"
        )
    missing = [key for key in required if key not in value]
    if missing:
        raise PlanError(f"pillar {where} has no {missing[0]}")
    return value


def check_version(version: Any) -> str:
    """A release version must be a valid Docker tag (it becomes ``<image>:<version>``)."""
    if not isinstance(version, str) or not TAG.match(version):
        raise PlanError(
            f"version {_shown(version)} is not a valid tag: up to 128 letters, digits, "
            "'_', '.' and '-', not starting with '.' or '-'"
        )
    return version


def load_app(name: str, data: Any, environments: list[str]) -> AppRelease:
    """Check ``release:apps:<name>`` against the inventory's environments (in promotion order)."""
    where = f"release:apps:{name}"
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise PlanError(
            f"pillar release:apps has an app named {_shown(name)}: lower-case letters, digits "
            "and '-', at most 63"
        )
    app = _mapping(
        where,
        data,
        ("git", "image", "port", "instances", "canary"),
        ("health", "resources", "base"),
    )
    if not isinstance(app["git"], str) or not app["git"]:
        raise PlanError(f"pillar {where}:git is {_shown(app['git'])}: it must be a git URL")
    if not isinstance(app["image"], str) or not REPOSITORY.match(app["image"]):
        raise PlanError(
            f"pillar {where}:image is {_shown(app['image'])}: it must be a repository path "
            "(lower-case components separated by '/')"
        )
    port = int(_number(f"{where}:port", app["port"], 1, 65535, integer=True))
    base = app.get("base")
    if base is not None:
        repository, _, tag = str(base).rpartition(":")
        if not isinstance(base, str) or not REPOSITORY.match(repository) or not TAG.match(tag):
            raise PlanError(
                f"pillar {where}:base is {_shown(base)}: it must be <repository>:<tag> of an "
                "image in the cluster registry"
            )

    health = _mapping(f"{where}:health", app.get("health", {"path": "/"}), ("path",), ())
    if not isinstance(health["path"], str) or not health["path"].startswith("/"):
        raise PlanError(
            f"pillar {where}:health:path is {_shown(health['path'])}: it must start with /"
        )

    instances = _mapping(f"{where}:instances", app["instances"], tuple(environments), ())
    for env in environments:
        _number(f"{where}:instances:{env}", instances[env], 1, 1000, integer=True)

    resources = _mapping(f"{where}:resources", app.get("resources", {}), (), ("cpus", "mem"))
    cpus = float(_number(f"{where}:resources:cpus", resources.get("cpus", 0.1), 0.01, 64))
    mem = int(_number(f"{where}:resources:mem", resources.get("mem", 64), 16, 65536, integer=True))

    canary = _mapping(
        f"{where}:canary", app["canary"], ("steps", "gate"), ("inconclusive", "repeat_limit")
    )
    raw_steps = canary["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PlanError(
            f"pillar {where}:canary:steps is {_shown(raw_steps)}: it must be a list of steps"
        )
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        step_where = f"{where}:canary:steps[{index}]"
        raw = _mapping(step_where, raw, ("share", "window"), ())
        share = raw["share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 100:
            raise PlanError(
                f"pillar {step_where}:share is {_shown(share)}: a share is a percentage above 0 "
                "and below 100 (the rollout after the last step sends the rest)"
            )
        if steps and share <= steps[-1].share:
            raise PlanError(
                f"pillar {step_where}:share is {share}: the shares must increase, and the step "
                f"before has {steps[-1].share:g}"
            )
        window = int(
            _number(f"{step_where}:window", raw["window"], 1, MAX_WINDOW_SECONDS, integer=True)
        )
        steps.append(Step(float(share), window))

    raw_gate = _mapping(
        f"{where}:canary:gate",
        canary["gate"],
        ("max_5xx_share", "p99_ms", "min_requests", "margin"),
        ("margin_ms",),
    )
    gate = Gate(
        max_5xx_share=float(
            _number(f"{where}:canary:gate:max_5xx_share", raw_gate["max_5xx_share"], 0, 1)
        ),
        p99_ms=float(_number(f"{where}:canary:gate:p99_ms", raw_gate["p99_ms"], 1, 600_000)),
        min_requests=int(
            _number(
                f"{where}:canary:gate:min_requests",
                raw_gate["min_requests"],
                1,
                10_000_000,
                integer=True,
            )
        ),
        margin=float(_number(f"{where}:canary:gate:margin", raw_gate["margin"], 0, 10)),
        margin_ms=float(
            _number(f"{where}:canary:gate:margin_ms", raw_gate.get("margin_ms", 20), 0, 600_000)
        ),
    )

    inconclusive = canary.get("inconclusive", "fail")
    if inconclusive not in INCONCLUSIVE_ACTIONS:
        raise PlanError(
            f"pillar {where}:canary:inconclusive is {_shown(inconclusive)}: "
            f"one of {', '.join(INCONCLUSIVE_ACTIONS)}"
        )
    repeat_limit = int(
        _number(f"{where}:canary:repeat_limit", canary.get("repeat_limit", 1), 0, 10, integer=True)
    )
    return AppRelease(
        name=name,
        git=app["git"],
        image=app["image"],
        port=port,
        health_path=health["path"],
        instances={env: int(instances[env]) for env in environments},
        cpus=cpus,
        mem=mem,
        steps=tuple(steps),
        gate=gate,
        inconclusive=inconclusive,
        repeat_limit=repeat_limit,
        base=base,
    )
