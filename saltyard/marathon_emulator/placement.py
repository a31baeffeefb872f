"""Pure decision functions: picking an agent for a task (the constraint rules themselves are
``saltyard.marathon_constraints``, shared with saltyard's drain) and the rolling-upgrade
arithmetic.

Kept free of Docker and threads so they can be unit-tested directly.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

# The constraint rules are shared with saltyard's drain; re-exported for the emulator's modules.
from saltyard.marathon_constraints import (
    UNRESERVED,
    AgentInfo,
    constraint_allows,
    eligible_agents,
    role_error,
)

__all__ = [
    "UNRESERVED",
    "AgentInfo",
    "constraint_allows",
    "eligible_agents",
    "pick_agent",
    "role_error",
    "rolling_step",
]


def pick_agent(
    constraints: list[list[str]], agents: list[AgentInfo], placed: list[AgentInfo]
) -> AgentInfo | None:
    """The eligible agent running the fewest instances of the app (first by name on ties)."""
    candidates = eligible_agents(constraints, agents, placed)
    if not candidates:
        return None
    load = Counter(a.name for a in placed)
    return min(candidates, key=lambda a: (load[a.name], a.name))


@dataclass(frozen=True)
class RollingDecision:
    kill_old: int
    kill_new: int
    start_new: int


def rolling_step(
    target: int,
    old_alive: int,
    new_alive: int,
    new_healthy: int,
    killing: int,
    minimum_health_capacity: float,
    maximum_over_capacity: float,
) -> RollingDecision:
    """One step of Marathon's replacement logic for an app converging to ``target`` instances of
    the current config.

    Keeps at least ceil(target x mHC) instances (old ones, or new ones that passed their health
    checks) alive, never runs more than floor(target x (1 + mOC)) instances (counting those being
    killed), and when both bounds coincide and nothing is pending, kills one old instance to make
    progress (as Marathon does).
    """
    min_healthy = math.ceil(target * minimum_health_capacity - 1e-9)
    max_capacity = max(target, math.floor(target * (1 + maximum_over_capacity) + 1e-9))
    kill_new = max(0, new_alive - target)
    new_alive -= kill_new
    new_healthy = min(new_healthy, new_alive)
    kill_old = max(0, min(old_alive, old_alive + new_healthy - min_healthy))
    remaining_old = old_alive - kill_old
    start = max(0, min(target - new_alive, max_capacity - remaining_old - new_alive - killing))
    pending = new_alive - new_healthy
    if kill_old == 0 and start == 0 and old_alive > 0 and pending == 0 and killing == 0:
        kill_old = 1  # the replacement starts once this kill has completed
    return RollingDecision(kill_old=kill_old, kill_new=kill_new, start_new=start)
