"""Marathon's placement constraints, evaluated against agents and their attributes: which agents
may take one more instance of an app. Shared by the Marathon-API emulator (where it places tasks)
and saltyard's drain (whether an agent's tasks have anywhere else to go), so both read the
constraints the same way. Pure functions, no I/O.
"""

from __future__ import annotations

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
