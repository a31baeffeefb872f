"""Marathon's placement rules, evaluated against agents: which agents may take one more instance
of an app. Two rules: the app's constraints against the agents' attributes, and the app's
``acceptedResourceRoles`` against the role an agent's resources are reserved for (a static
reservation: Mesos's ``--default_role``; ``*`` for unreserved resources). Shared by the
Marathon-API emulator (where it places tasks) and saltyard's drain (whether an agent's tasks have
anywhere else to go), so both read them the same way. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# Mesos's name for resources reserved for no role.
UNRESERVED = "*"
# Marathon's default for an app without acceptedResourceRoles when it registers without a
# --mesos_role and has no --default_accepted_resource_roles: unreserved resources only.
DEFAULT_ACCEPTED_ROLES = (UNRESERVED,)
# A Mesos role name (Mesos refuses ".", "..", a leading "-", "/" and whitespace; this is stricter).
ROLE_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class AgentInfo:
    name: str  # the agent's hostname
    attributes: dict[str, str]
    # The role its resources are reserved for; UNRESERVED when they are not.
    role: str = UNRESERVED

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


def role_error(role) -> str | None:
    """Why ``role`` is not a Mesos role name (``*`` included), or None."""
    if role == UNRESERVED or (isinstance(role, str) and ROLE_PATTERN.fullmatch(role)):
        return None
    return f"role {role!r} is not a Mesos role name ('*' or letters, digits, '_', '.', '-')"


def accepts(roles: Iterable[str], agent: AgentInfo) -> bool:
    """Whether an app that accepts resources of ``roles`` may run on ``agent``."""
    return agent.role in set(roles)


def eligible_agents(
    constraints: list[list[str]],
    agents: list[AgentInfo],
    placed: list[AgentInfo],
    roles: Iterable[str] = DEFAULT_ACCEPTED_ROLES,
) -> list[AgentInfo]:
    """The agents whose role the app accepts (``roles``: its acceptedResourceRoles, or
    Marathon's default) and that meet every constraint given where its instances run."""
    roles = set(roles)
    return [
        a
        for a in agents
        if accepts(roles, a) and all(constraint_allows(c, a, agents, placed) for c in constraints)
    ]
