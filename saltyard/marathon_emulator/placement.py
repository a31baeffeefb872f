"""Pure decision functions: placement constraints and the rolling-upgrade arithmetic.

Kept free of Docker and threads so they can be unit-tested directly.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentInfo:
    name: str  # the agent's hostname
    attributes: dict[str, str]

    def field(self, name: str) -> str | None:
        if name == "hostname":
            return self.name
        return self.attributes.get(name)


def constraint_allows(
    constraint: list[str], candidate: AgentInfo, agents: list[AgentInfo], placed: list[AgentInfo]
) -> bool:
    """Whether one more instance may go to ``candidate`` given the agents of the app's current
    instances (``placed``). An agent without the attribute matches only UNLIKE."""
    field, op = constraint[0], constraint[1]
    value = constraint[2] if len(constraint) > 2 else None
    mine = candidate.field(field)
    if op == "UNLIKE":
        return mine is None or value is None or not re.fullmatch(value, mine)
    if mine is None:
        return False
    if op in ("CLUSTER", "IS"):
        if value:
            return mine == value
        # CLUSTER without value: every instance on agents sharing the first instance's value.
        existing = {a.field(field) for a in placed}
        return not existing or mine in existing
    if op == "LIKE":
        return bool(re.fullmatch(value or "", mine))
    if op == "UNIQUE":
        return all(a.field(field) != mine for a in placed)
    if op == "MAX_PER":
        return sum(1 for a in placed if a.field(field) == mine) < int(value or 1)
    if op == "GROUP_BY":
        groups = {a.field(field) for a in agents if a.field(field) is not None}
        counts = Counter(a.field(field) for a in placed if a.field(field) is not None)
        lowest = min(counts.get(g, 0) for g in groups) if groups else 0
        return counts.get(mine, 0) <= lowest
    return False


def eligible_agents(
    constraints: list[list[str]], agents: list[AgentInfo], placed: list[AgentInfo]
) -> list[AgentInfo]:
    return [a for a in agents if all(constraint_allows(c, a, agents, placed) for c in constraints)]


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
