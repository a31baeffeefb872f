"""
Docker macvlan networks on this node's engine, through the Docker SDK (``docker``, pinned in
pyproject.toml and installed with saltyard in the minion's virtualenv).

Salt 3008 has no core state for Docker networks (its docker modules moved out of Salt), so the
ipam role has this module and the ``macvlan_network`` state. Named so that no module Salt ships
(``docker``, ``network``, ...) is replaced (tests/unit/test_salt_names.py).

A network's settings are read as one mapping, the same shape the state compares::

    {"driver": "macvlan", "options": {"parent": "eth0", "macvlan_mode": "bridge"},
     "ipam_driver": "saltyard-ipam", "ipam_options": {"pool": "tasks"},
     "ipam_config": [{"subnet": "172.30.0.0/24", "gateway": "172.30.0.1",
                      "ip_range": "172.30.0.224/28"}]}

plus ``id`` and ``containers`` (the names of the containers attached on this node).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from salt.exceptions import CommandExecutionError

try:
    import docker
    import docker.errors
    import docker.types
    import requests.exceptions

    HAS_DOCKER = True
except ImportError:  # the minion's Python lacks the Docker SDK
    HAS_DOCKER = False

__virtualname__ = "macvlan_network"

# Set on the networks this module creates, so an operator sees where one came from.
LABEL = "saltyard.managed-by"
SYSFS_NET = "/sys/class/net"
# A Linux interface name: at most 15 characters, no '/', ':' or white space.
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
IFF_LOOPBACK = 0x8
# Seconds for one call to the engine.
ENGINE_TIMEOUT = 60
# The message of an engine that does not answer (a node before the docker state installed it):
# the state predicts a creation in test mode instead of failing.
NO_ENGINE = "the Docker engine does not answer"


def __virtual__() -> str | tuple[bool, str]:
    if not HAS_DOCKER:
        return (False, "macvlan_network: the Docker SDK for Python (docker) is not importable")
    return __virtualname__


def _client():
    try:
        return docker.from_env(timeout=ENGINE_TIMEOUT)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise CommandExecutionError(f"{NO_ENGINE}: {exc}") from exc


def _settings(attrs: dict) -> dict[str, Any]:
    ipam = attrs.get("IPAM") or {}
    return {
        "id": attrs.get("Id"),
        "driver": attrs.get("Driver"),
        "options": dict(attrs.get("Options") or {}),
        "ipam_driver": ipam.get("Driver"),
        "ipam_options": dict(ipam.get("Options") or {}),
        "ipam_config": [
            {
                "subnet": config.get("Subnet") or None,
                "gateway": config.get("Gateway") or None,
                "ip_range": config.get("IPRange") or None,
            }
            for config in ipam.get("Config") or []
        ],
        "containers": sorted(
            (c.get("Name") or cid[:12]) for cid, c in (attrs.get("Containers") or {}).items()
        ),
    }


def interface_problem(parent: str) -> str | None:
    """
    Why ``parent`` cannot be the parent of a macvlan network on this node, or None: not an
    interface name, no such interface (``/sys/class/net``), or the loopback interface.

    CLI Example:

    .. code-block:: bash

        salt agent-fat macvlan_network.interface_problem eth0
    """
    text = str(parent or "")
    if not INTERFACE_RE.match(text):
        return f"parent interface {text!r} is not an interface name"
    path = os.path.join(SYSFS_NET, text)
    if not os.path.exists(path):
        have = sorted(os.listdir(SYSFS_NET)) if os.path.isdir(SYSFS_NET) else []
        return (
            f"parent interface {text!r} does not exist on this node (it has "
            f"{', '.join(have) or 'none'})"
        )
    try:
        with open(os.path.join(path, "flags")) as handle:
            flags = int(handle.read().strip(), 16)
    except (OSError, ValueError):
        flags = 0
    if flags & IFF_LOOPBACK:
        return f"parent interface {text!r} is a loopback interface, which macvlan cannot use"
    return None


def get(name: str) -> dict | None:
    """
    The settings of Docker network ``name`` on this node's engine (see the module's
    docstring), or None when there is none.

    CLI Example:

    .. code-block:: bash

        salt agent-fat macvlan_network.get macvlan
    """
    client = _client()
    try:
        # By name: the engine also matches a name given as an id prefix, which must not count.
        found = [n for n in client.networks.list(names=[name]) if n.attrs.get("Name") == str(name)]
        if not found:
            return None
        # The listing leaves out the attached containers; the network's own read has them.
        return _settings(client.api.inspect_network(found[0].id))
    except docker.errors.APIError as exc:
        raise CommandExecutionError(f"reading Docker network {name!r}: {exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise CommandExecutionError(f"{NO_ENGINE}: {exc}") from exc
    finally:
        client.close()


def wait_for_plugin(socket: str, timeout: float = 30) -> bool:
    """
    Wait until the plugin socket ``socket`` exists (the engine finds a plugin by its socket
    under /run/docker/plugins/), at most ``timeout`` seconds; True when it does.

    CLI Example:

    .. code-block:: bash

        salt agent-fat macvlan_network.wait_for_plugin /run/docker/plugins/saltyard-ipam.sock
    """
    deadline = time.monotonic() + float(timeout)
    while not os.path.exists(socket):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def create(
    name: str,
    parent: str,
    subnet: str,
    gateway: str,
    ip_range: str | None = None,
    ipam_driver: str = "saltyard-ipam",
    ipam_options: dict | None = None,
    macvlan_mode: str = "bridge",
) -> dict:
    """
    Create the macvlan network ``name`` on ``parent`` with IPAM driver ``ipam_driver`` (its
    options, e.g. ``{"pool": "tasks"}``, one IPv4 configuration: ``subnet``, ``gateway`` and
    the optional ``ip_range``); return its settings as read back. Refuses a parent that does
    not exist before asking the engine.

    CLI Example:

    .. code-block:: bash

        salt agent-fat macvlan_network.create macvlan eth0 172.30.0.0/24 172.30.0.1 \\
            ip_range=172.30.0.224/28 ipam_options='{"pool": "tasks"}'
    """
    problem = interface_problem(parent)
    if problem:
        raise CommandExecutionError(problem)
    pool = docker.types.IPAMPool(subnet=subnet, gateway=gateway, iprange=ip_range or None)
    ipam = docker.types.IPAMConfig(
        driver=ipam_driver, pool_configs=[pool], options=dict(ipam_options or {})
    )
    client = _client()
    try:
        client.networks.create(
            name,
            driver="macvlan",
            options={"parent": parent, "macvlan_mode": macvlan_mode},
            ipam=ipam,
            check_duplicate=True,
            labels={LABEL: "salt macvlan_network"},
        )
    except docker.errors.APIError as exc:
        # The IPAM plugin's refusal comes back as the engine's error: it names the value.
        raise CommandExecutionError(f"creating Docker network {name!r}: {exc}") from exc
    finally:
        client.close()
    created = get(name)
    if created is None:
        raise CommandExecutionError(f"Docker network {name!r} was created but cannot be read")
    return created


def remove(name: str) -> bool:
    """
    Remove Docker network ``name`` from this node's engine; True when one was removed. The
    engine refuses while containers are attached (the error names them).

    CLI Example:

    .. code-block:: bash

        salt agent-fat macvlan_network.remove macvlan
    """
    current = get(name)
    if current is None:
        return False
    client = _client()
    try:
        client.api.remove_network(current["id"])
    except docker.errors.APIError as exc:
        raise CommandExecutionError(f"removing Docker network {name!r}: {exc}") from exc
    finally:
        client.close()
    return True
