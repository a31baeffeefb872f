"""Mesos agent helpers: the attribute files, the role its resources are reserved for, and the
agent's checkpointed identity.

A Mesos agent checkpoints its identity (agent id, attributes and resources, their reservation
included) under ``<work_dir>/meta/slaves/latest``. Restarted with different attributes or
another ``--default_role`` it refuses to start ("Incompatible agent info"); the fix removes that
checkpoint, which gives the agent a new id and kills its tasks. So neither changes silently: see
the ``mesos_agent`` state.
"""

from __future__ import annotations

import os
import shutil

from salt.exceptions import CommandExecutionError

from saltyard.marathon_constraints import role_error

__virtualname__ = "mesos_agent"

ATTRIBUTES_DIR = "/etc/mesos-slave/attributes"
WORK_DIR = "/var/lib/mesos"
# Mesosphere packaging: one file per flag; this one is the agent's --default_role.
DEFAULT_ROLE_FILE = "/etc/mesos-slave/default_role"


def __virtual__():
    return __virtualname__


def attributes(path: str = ATTRIBUTES_DIR) -> dict[str, str]:
    """The attributes laid down as one file per key (Mesosphere packaging).

    CLI Example:

    .. code-block:: bash

        salt agent-fat mesos_agent.attributes
    """
    if not os.path.isdir(path):
        return {}
    result = {}
    for key in sorted(os.listdir(path)):
        with open(os.path.join(path, key)) as handle:
            result[key] = handle.read().strip()
    return result


def checkpoint(work_dir: str = WORK_DIR) -> str | None:
    """The path of the agent's checkpointed identity, or None when there is none.

    CLI Example:

    .. code-block:: bash

        salt agent-fat mesos_agent.checkpoint
    """
    latest = os.path.join(work_dir, "meta", "slaves", "latest")
    return latest if os.path.lexists(latest) else None


def write_attributes(desired: dict, path: str = ATTRIBUTES_DIR) -> dict[str, str]:
    """Make the attribute files exactly ``desired`` (extra files are removed); return them.

    CLI Example:

    .. code-block:: bash

        salt agent-fat mesos_agent.write_attributes '{"env": "fat"}'
    """
    for key, value in desired.items():
        if not key or "/" in key or ":" in key or ";" in key:
            raise CommandExecutionError(f"invalid Mesos attribute name {key!r}")
        if ";" in str(value) or ":" in str(value):
            raise CommandExecutionError(f"invalid value {value!r} for Mesos attribute {key!r}")
    os.makedirs(path, exist_ok=True)
    for key in os.listdir(path):
        if key not in desired:
            os.unlink(os.path.join(path, key))
    for key, value in desired.items():
        with open(os.path.join(path, key), "w") as handle:
            handle.write(f"{value}\n")
    return attributes(path)


def default_role(path: str = DEFAULT_ROLE_FILE) -> str | None:
    """The role the agent's resources are reserved for (its ``--default_role`` flag file), or
    None when the file is absent (unreserved).

    CLI Example:

    .. code-block:: bash

        salt agent-vm mesos_agent.default_role
    """
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return handle.read().strip() or None


def write_default_role(role: str | None, path: str = DEFAULT_ROLE_FILE) -> str | None:
    """Reserve the agent's resources for ``role`` (write the flag file), or remove the file when
    ``role`` is None; return what reads back.

    CLI Example:

    .. code-block:: bash

        salt agent-vm mesos_agent.write_default_role vm-agents
    """
    if role is None:
        if os.path.exists(path):
            os.unlink(path)
        return default_role(path)
    if role == "*" or role_error(role):
        raise CommandExecutionError(f"invalid Mesos role {role!r} to reserve the agent for")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(f"{role}\n")
    return default_role(path)


def reset_checkpoint(work_dir: str = WORK_DIR) -> bool:
    """Remove the agent's checkpointed identity (the agent gets a new id; its tasks die).

    Only after the agent was drained. Returns True when a checkpoint was removed.

    CLI Example:

    .. code-block:: bash

        salt agent-fat mesos_agent.reset_checkpoint
    """
    latest = checkpoint(work_dir)
    if latest is None:
        return False
    if os.path.islink(latest) or os.path.isfile(latest):
        os.unlink(latest)
    else:
        shutil.rmtree(latest)
    return True


def converged(sls: str = "mesos.agent") -> dict[str, int]:
    """Run ``sls`` in test mode on this node and fail (with the states named) unless it would
    change nothing; nothing is changed either way.

    The reset orchestration's last step calls this: ``salt.state`` with ``test: True`` succeeds
    even when changes are predicted, and a real apply would hide a change it makes itself. A
    state that fails, one whose result is None ("would change") and one with predicted changes
    all count. Returns the number of states checked.

    CLI Example:

    .. code-block:: bash

        salt agent-fat mesos_agent.converged
    """
    result = __salt__["state.sls"](sls, test=True)
    if not isinstance(result, dict):
        # A render error or a refused run comes back as a list of messages.
        raise CommandExecutionError(f"{sls} did not run in test mode: {result}")
    pending = []

    def run_order(item):
        return item[1].get("__run_num__", 0) if isinstance(item[1], dict) else -1

    for key, ret in sorted(result.items(), key=run_order):
        if not isinstance(ret, dict):
            pending.append(f"{key}: {ret}")
        elif ret.get("result") is not True or ret.get("changes"):
            state_id = ret.get("__id__", key)
            why = "fails" if ret.get("result") is False else "would change"
            comment = " ".join(str(ret.get("comment", "")).split())
            pending.append(f"{state_id} {why}" + (f": {comment}" if comment else ""))
    if pending:
        raise CommandExecutionError(
            f"{sls} is not converged on this node; test mode predicts: " + "; ".join(pending)
        )
    return {"states": len(result)}
