"""State: a Mesos agent's attributes and reserved role, never changed silently under a
checkpointed agent."""

from __future__ import annotations

__virtualname__ = "mesos_agent"


def __virtual__():
    if "mesos_agent.attributes" not in __salt__ or "mesos_agent.default_role" not in __salt__:
        return (False, "the mesos_agent execution module is not available")
    return __virtualname__


def _diff(current: dict, desired: dict) -> str:
    keys = sorted(set(current) | set(desired))
    return ", ".join(
        f"{k}: {current.get(k, '(none)')} -> {desired.get(k, '(none)')}"
        for k in keys
        if current.get(k) != desired.get(k)
    )


def attributes(name: str, attributes: dict, work_dir: str = "/var/lib/mesos", reset: bool = False):
    """Lay down the agent's attribute files (``name`` is their folder).

    When the files already exist with other values and the agent has checkpointed its identity,
    the state fails and changes nothing, unless ``reset`` is True (set by the drain orchestration
    after the agent was drained): then the checkpoint is removed and the new attributes written.

    SLS Example:

    .. code-block:: yaml

        mesos-agent-attributes:
          mesos_agent.attributes:
            - name: /etc/mesos-slave/attributes
            - attributes: {env: fat}
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    desired = {str(k): str(v) for k, v in (attributes or {}).items()}
    current = __salt__["mesos_agent.attributes"](name)
    if current == desired:
        ret["comment"] = f"agent attributes are {desired}"
        return ret
    checkpoint = __salt__["mesos_agent.checkpoint"](work_dir)
    change = _diff(current, desired)
    if current and checkpoint and not reset:
        ret["result"] = False
        ret["comment"] = (
            f"refusing to change the Mesos agent's attributes ({change}): the agent has "
            f"checkpointed its identity in {checkpoint} and would refuse to start "
            '("Incompatible agent info"). Drain the agent, then run the reset orchestration '
            "(pillar mesos:agent:reset_for_attribute_change: True), which removes the checkpoint; "
            "the agent then gets a new id and its tasks are killed."
        )
        return ret
    ret["changes"] = {"old": current, "new": desired}
    if checkpoint and current:
        ret["changes"]["checkpoint_removed"] = checkpoint
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"agent attributes would change: {change}"
        return ret
    if checkpoint and current:
        __salt__["mesos_agent.reset_checkpoint"](work_dir)
    written = __salt__["mesos_agent.write_attributes"](desired, name)
    if written != desired:
        ret["result"] = False
        ret["comment"] = f"attributes read back as {written}, expected {desired}"
        return ret
    ret["comment"] = f"agent attributes changed: {change}"
    return ret


def reservation(
    name: str,
    role: str | None = None,
    work_dir: str = "/var/lib/mesos",
    reset: bool = False,
):
    """Reserve the agent's resources for ``role`` (its ``--default_role`` flag file, ``name``),
    or leave them unreserved (``role`` None: the file is removed). Only apps whose
    ``acceptedResourceRoles`` name the role then run there.

    Like the attributes, the reservation is part of the identity a Mesos agent checkpoints:
    another role under a checkpointed agent fails the state and changes nothing, unless
    ``reset`` is True (after a drain, the reset orchestration): then the checkpoint is removed
    first.

    SLS Example:

    .. code-block:: yaml

        mesos-agent-reservation:
          mesos_agent.reservation:
            - name: /etc/mesos-slave/default_role
            - role: vm-agents
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    current = __salt__["mesos_agent.default_role"](name)
    shown = {None: "unreserved ('*')"}
    if current == role:
        ret["comment"] = f"agent resources are {shown.get(role, f'reserved for {role!r}')}"
        return ret
    change = (
        f"{shown.get(current, f'reserved for {current!r}')} -> "
        f"{shown.get(role, f'reserved for {role!r}')}"
    )
    checkpoint = __salt__["mesos_agent.checkpoint"](work_dir)
    if checkpoint and not reset:
        ret["result"] = False
        ret["comment"] = (
            f"refusing to change the Mesos agent's reservation ({change}): the agent has "
            f"checkpointed its identity in {checkpoint} and would refuse to start "
            '("Incompatible agent info"). Drain the agent, then run the reset orchestration '
            "(pillar mesos:agent:reset_for_attribute_change: True), which removes the checkpoint; "
            "the agent then gets a new id and its tasks are killed."
        )
        return ret
    ret["changes"] = {"old": current, "new": role}
    if checkpoint:
        ret["changes"]["checkpoint_removed"] = checkpoint
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"agent reservation would change: {change}"
        return ret
    if checkpoint:
        __salt__["mesos_agent.reset_checkpoint"](work_dir)
    written = __salt__["mesos_agent.write_default_role"](role, name)
    if written != role:
        ret["result"] = False
        ret["comment"] = f"the reservation read back as {written!r}, expected {role!r}"
        return ret
    ret["comment"] = f"agent reservation changed: {change}"
    return ret
