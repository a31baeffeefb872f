"""
Gate a highstate on the running kernel.

``min_version`` is a pure check: it never changes anything. Other states ``require`` it so a
node with a too-old kernel fails before anything is installed or configured on it.

.. code-block:: yaml

    kernel-minimum:
      kernel_check.min_version:
        - name: "4.4.27"   # quote it: YAML reads 4.10 as the float 4.1
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "kernel_check"


def __virtual__() -> str | tuple[bool, str]:
    # The comparison logic lives in the execution module; without it there is nothing to call.
    if "kernel_check.meets" not in __salt__:
        return (False, "kernel_check state: the kernel_check execution module is not loaded")
    return __virtualname__


def min_version(name: str) -> dict[str, Any]:
    """
    Fail unless the running kernel is at least ``name``.

    name
        The minimum kernel release, e.g. ``4.4.27`` or ``4.4.0-210-generic``.

    The result is the same in test mode: nothing would change either way, so reporting
    ``None`` ("would change") would hide a failing check from ``test=True`` runs.

    SLS Example:

    .. code-block:: yaml

        kernel-minimum:
          kernel_check.min_version:
            - name: "4.4.27"   # quoted: YAML reads 4.10 as the float 4.1

    CLI Example:

    .. code-block:: bash

        salt '*' state.single kernel_check.min_version name=4.4.27
    """
    ret: dict[str, Any] = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        info = __salt__["kernel_check.meets"](name)
    except CommandExecutionError as exc:
        ret["comment"] = f"cannot check the kernel against minimum {name!r}: {exc}"
        return ret

    if info["ok"]:
        ret["result"] = True
        ret["comment"] = f"running kernel {info['running']} meets the minimum {info['minimum']}"
    else:
        ret["comment"] = (
            f"running kernel {info['running']} is older than the minimum {info['minimum']}: "
            f"upgrade this node to kernel {info['minimum']} or newer and reboot it "
            "before saltyard changes anything on it"
        )
    return ret
