"""
Fail a highstate early when Docker's overlay2 driver cannot work on the data root.

``preflight`` is a pure check: it never changes anything. The Docker states ``require`` it so a
node whose data root is on an unsuitable filesystem fails before Docker is installed.

.. code-block:: yaml

    docker-storage-preflight:
      docker_storage.preflight:
        - name: {{ salt['pillar.get']('docker:data_root', '/var/lib/docker') }}
        - driver: {{ salt['pillar.get']('docker:storage_driver', 'overlay2') }}
"""

from __future__ import annotations

from typing import Any

__virtualname__ = "docker_storage"


def __virtual__() -> str | tuple[bool, str]:
    # All the probing lives in the execution module, which only loads on Linux with findmnt.
    if "docker_storage.preflight" not in __salt__:
        return (False, "docker_storage state: the docker_storage execution module is not loaded")
    return __virtualname__


def preflight(name: str = "/var/lib/docker", driver: str = "overlay2") -> dict[str, Any]:
    """
    Fail unless Docker can use ``driver`` with its data root at ``name``.

    name
        Docker's data root (pillar ``docker:data_root``); it need not exist yet.
    driver
        The storage driver (pillar ``docker:storage_driver``); only overlay2 passes.

    The result is the same in test mode: the check has no side effects beyond a temporary
    probe directory, and a ``test=True`` run should show a failing check as failing.

    SLS Example:

    .. code-block:: yaml

        docker-storage-preflight:
          docker_storage.preflight:
            - name: /var/lib/docker
            - driver: overlay2

    CLI Example:

    .. code-block:: bash

        salt '*' state.single docker_storage.preflight name=/var/lib/docker driver=overlay2
    """
    check = __salt__["docker_storage.preflight"](name, driver)
    return {
        "name": name,
        "changes": {},
        "result": bool(check["ok"]),
        "comment": check["message"],
    }
