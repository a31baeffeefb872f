"""Mesos agent helpers: the attribute files and the agent's checkpointed identity.

A Mesos agent checkpoints its identity (agent id and attributes) under
``<work_dir>/meta/slaves/latest``. Restarted with different attributes it refuses to start
("Incompatible agent info"); the fix removes that checkpoint, which gives the agent a new id and
kills its tasks. So attributes never change silently: see the ``mesos_agent`` state.
"""

from __future__ import annotations

import os
import shutil

from salt.exceptions import CommandExecutionError

__virtualname__ = "mesos_agent"

ATTRIBUTES_DIR = "/etc/mesos-slave/attributes"
WORK_DIR = "/var/lib/mesos"


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
