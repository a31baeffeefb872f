"""
IPVS (LVS) virtual services and their real servers, over ``ipvsadm``.

No Python library for IPVS is well kept (the netlink bindings that exist are unmaintained or
cover only part of the API), so this module drives ``ipvsadm``, the kernel's own tool, which
Debian packages and keeps up to date. It reads the table in ipvsadm's save format
(``ipvsadm -S -n``: one ``-A``/``-a`` command per line, numeric addresses), which is stable and
meant to be read back, rather than the human listing of ``ipvsadm -Ln``.

Every value is checked before ipvsadm runs, and a bad one is named in the error: address, port,
protocol (``tcp``/``udp``), scheduler (ipvsadm's list), forwarding method (``dr``, ``nat``,
``tunnel``) and weight (0 to 2147483647; 0 takes a server out of rotation without removing it).

For directors that are not driven by keepalived: the ``lvs`` state (the registry VIP) lets
keepalived own the table, and keepalived would undo changes made here. The ``ipvs_service`` state
builds on this module.

Named ``ipvs``, not ``lvs``: Salt (up to 3007) ships an ``lvs`` module and ``lvs_service`` and
``lvs_server`` states with other signatures, and a custom module replaces Salt's of the same
name on the minion, which breaks Salt's states that call it (tests/unit/test_salt_names.py).
"""

from __future__ import annotations

import ipaddress
import shlex
import time
import urllib.error
import urllib.request
from typing import Any

import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "ipvs"

IPVSADM = "ipvsadm"
PROTOCOLS = {"tcp": "-t", "udp": "-u"}
# ipvsadm 1.31 (Debian 12), `ipvsadm --help`: the schedulers it accepts.
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
# Forwarding methods and their ipvsadm flags: gatewaying (direct routing), masquerading (NAT),
# ipip (tunnelling).
FORWARDING = {"dr": "-g", "nat": "-m", "tunnel": "-i"}
_FLAG_TO_FORWARDING = {flag: method for method, flag in FORWARDING.items()}
# ipvsadm 1.31 and the kernel take any non-negative int (a weight of 70000 was accepted).
MAX_WEIGHT = 2**31 - 1


def __virtual__() -> str | tuple[bool, str]:
    if not salt.utils.path.which(IPVSADM):
        return (False, "ipvs: ipvsadm is not installed (Debian package ipvsadm)")
    return __virtualname__


# ---------------------------------------------------------------------- checks


def check_address(address: Any, what: str = "address") -> str:
    """The address in its canonical text form; an error naming it when it is not an IP address.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_address 172.30.0.200
    """
    try:
        return str(ipaddress.ip_address(str(address).strip("[]")))
    except ValueError:
        raise SaltInvocationError(
            f"invalid {what} {address!r}: not an IPv4 or IPv6 address"
        ) from None


def check_port(port: Any, what: str = "port") -> int:
    """The port as an int; an error naming it unless it is 1 to 65535.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_port 5000
    """
    try:
        value = int(str(port), 10)
    except ValueError:
        value = -1
    if isinstance(port, bool) or not 1 <= value <= 65535:
        raise SaltInvocationError(f"invalid {what} {port!r}: a port is 1 to 65535")
    return value


def check_protocol(protocol: Any) -> str:
    """``tcp`` or ``udp``; an error naming anything else.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_protocol tcp
    """
    if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
        raise SaltInvocationError(
            f"invalid protocol {protocol!r}: one of {', '.join(sorted(PROTOCOLS))}"
        )
    return protocol.lower()


def _one_of(value: Any, choices, what: str) -> str:
    if value not in choices:
        raise SaltInvocationError(f"invalid {what} {value!r}: one of {', '.join(choices)}")
    return value


def check_scheduler(scheduler: Any) -> str:
    """A scheduler from ipvsadm's list; an error naming anything else.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_scheduler wlc
    """
    return _one_of(scheduler, SCHEDULERS, "scheduler")


def check_forwarding(forwarding: Any) -> str:
    """``dr``, ``nat`` or ``tunnel``; an error naming anything else.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_forwarding dr
    """
    return _one_of(forwarding, FORWARDING, "forwarding method")


def check_weight(weight: Any) -> int:
    """The weight as an int; an error naming it unless it is 0 to 2147483647.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_weight 1
    """
    try:
        value = int(str(weight), 10)
    except ValueError:
        value = -1
    if isinstance(weight, bool) or not 0 <= value <= MAX_WEIGHT:
        raise SaltInvocationError(f"invalid weight {weight!r}: a weight is 0 to {MAX_WEIGHT}")
    return value


def check_server(
    server: Any, service_port: int, forwarding: str = "dr", weight: int = 1
) -> dict[str, Any]:
    """A real server as the state takes it (``address``, and optionally ``port``, ``weight``,
    ``forwarding``), checked and with the defaults filled in.

    With direct routing and tunnelling the director does not rewrite the port: ipvsadm sets the
    real server's port to the service's. A different port would never converge, so it is refused.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.check_server '{"address": "172.30.0.31"}' 5000
    """
    if not isinstance(server, dict) or "address" not in server:
        raise SaltInvocationError(
            f"invalid real server {server!r}: a mapping with address (and port, weight, forwarding)"
        )
    unknown = set(server) - {"address", "port", "weight", "forwarding"}
    if unknown:
        raise SaltInvocationError(
            f"real server {server.get('address')!r}: unknown keys {sorted(unknown)}"
        )
    address = check_address(server["address"], "real server address")
    method = check_forwarding(server.get("forwarding", forwarding))
    port = check_port(server.get("port", service_port), f"port of real server {address}")
    if method != "nat" and port != service_port:
        raise SaltInvocationError(
            f"real server {address}: port {port} differs from the service's {service_port}, "
            f"which forwarding method {method} cannot do (only nat rewrites the port)"
        )
    return {
        "address": address,
        "port": port,
        "weight": check_weight(server.get("weight", weight)),
        "forwarding": method,
    }


# ---------------------------------------------------------------------- the table


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _split_endpoint(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host)), int(port)


def parse_save(text: str) -> list[dict[str, Any]]:
    """Parse ipvsadm's save format (``ipvsadm -S -n``) into services with their real servers.

    Each service: ``protocol`` (tcp, udp, or fwmark for firewall-mark services, which this module
    only lists), ``address``, ``port`` (None for fwmark), ``fwmark``, ``scheduler``,
    ``persistent`` (seconds, or None), ``servers``: [{address, port, forwarding, weight}].

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.parse_save "$(ipvsadm -S -n)"
    """
    services: list[dict[str, Any]] = []
    by_key: dict[tuple, dict[str, Any]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line)
        if not words:
            continue
        command, opts = words[0], _options(words[1:], lineno, line)
        key = _service_key(opts, lineno, line)
        if command == "-A":
            service = {
                "protocol": key[0],
                "address": key[1],
                "port": key[2],
                "fwmark": key[3],
                "scheduler": opts.get("-s", "wlc"),
                "persistent": int(opts["-p"]) if opts.get("-p") else None,
                "servers": [],
            }
            services.append(service)
            by_key[key] = service
        elif command == "-a":
            if key not in by_key or "-r" not in opts:
                raise CommandExecutionError(f"ipvsadm -S line {lineno} is not understood: {line}")
            address, port = _split_endpoint(opts["-r"])
            flags = [f for f in _FLAG_TO_FORWARDING if f in opts]
            by_key[key]["servers"].append(
                {
                    "address": address,
                    "port": port,
                    "forwarding": _FLAG_TO_FORWARDING[flags[0]] if flags else "dr",
                    "weight": int(opts.get("-w", 1)),
                }
            )
        else:
            raise CommandExecutionError(f"ipvsadm -S line {lineno} is not understood: {line}")
    return services


# Options of the save format that take a value; every other option is a flag.
_VALUED = {"-t", "-u", "-f", "-s", "-r", "-w", "-x", "-y", "-M", "-b", "--pe", "--tun-type"}
_VALUED |= {"--tun-port", "--tun-nocsum", "--sctp-service"}


def _options(words: list[str], lineno: int, line: str) -> dict[str, str | None]:
    opts: dict[str, str | None] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if not word.startswith("-"):
            raise CommandExecutionError(f"ipvsadm -S line {lineno} is not understood: {line}")
        # -p takes an optional timeout: "-p" alone means the default 300 s.
        if word == "-p":
            nxt = words[index + 1] if index + 1 < len(words) else ""
            if nxt.isdigit():
                opts[word] = nxt
                index += 2
            else:
                opts[word] = "300"
                index += 1
            continue
        if word in _VALUED and word != "--tun-nocsum":
            if index + 1 >= len(words):
                raise CommandExecutionError(f"ipvsadm -S line {lineno} is not understood: {line}")
            opts[word] = words[index + 1]
            index += 2
        else:
            opts[word] = None
            index += 1
    return opts


def _service_key(opts: dict, lineno: int, line: str) -> tuple:
    for proto, flag in PROTOCOLS.items():
        if opts.get(flag):
            address, port = _split_endpoint(opts[flag])
            return (proto, address, port, None)
    if opts.get("-f"):
        return ("fwmark", None, None, int(opts["-f"]))
    raise CommandExecutionError(f"ipvsadm -S line {lineno} names no service: {line}")


def _run(args: list[str]) -> str:
    result = __salt__["cmd.run_all"]([IPVSADM, *args], python_shell=False)
    if result["retcode"] != 0:
        raise CommandExecutionError(
            f"{shlex.join([IPVSADM, *args])} failed ({result['retcode']}): "
            f"{(result.get('stderr') or result.get('stdout') or '').strip()}"
        )
    return result.get("stdout") or ""


def services() -> list[dict[str, Any]]:
    """Every virtual service in the kernel's table, with its real servers (see ``parse_save``).

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.services
    """
    return parse_save(_run(["-S", "-n"]))


def service(address: str, port: int, protocol: str = "tcp") -> dict[str, Any] | None:
    """One virtual service with its real servers, or None when the table lacks it.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.service 172.30.0.200 5000
    """
    protocol = check_protocol(protocol)
    address = check_address(address, "service address")
    port = check_port(port, "service port")
    for svc in services():
        if (svc["protocol"], svc["address"], svc["port"]) == (protocol, address, port):
            return svc
    return None


def _service_args(address: str, port: int, protocol: str) -> list[str]:
    protocol = check_protocol(protocol)
    address = check_address(address, "service address")
    port = check_port(port, "service port")
    return [PROTOCOLS[protocol], _endpoint(address, port)]


def _set_service(
    flag: str, address: str, port: int, protocol: str, scheduler: str, persistent: int | None
) -> bool:
    """ipvsadm -A (add) or -E (edit) of a virtual service."""
    args = [flag, *_service_args(address, port, protocol), "-s", check_scheduler(scheduler)]
    if persistent:
        args += ["-p", str(check_port(persistent, "persistence timeout"))]
    _run(args)
    return True


def add_service(
    address: str,
    port: int,
    protocol: str = "tcp",
    scheduler: str = "wlc",
    persistent: int | None = None,
) -> bool:
    """Add a virtual service (an error if it exists).

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.add_service 172.30.0.200 5000 scheduler=rr
    """
    return _set_service("-A", address, port, protocol, scheduler, persistent)


def edit_service(
    address: str,
    port: int,
    protocol: str = "tcp",
    scheduler: str = "wlc",
    persistent: int | None = None,
) -> bool:
    """Change a virtual service's scheduler (and persistence); its real servers stay.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.edit_service 172.30.0.200 5000 scheduler=wrr
    """
    return _set_service("-E", address, port, protocol, scheduler, persistent)


def delete_service(address: str, port: int, protocol: str = "tcp") -> bool:
    """Delete a virtual service and its real servers (an error if it does not exist).

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.delete_service 172.30.0.200 5000
    """
    _run(["-D", *_service_args(address, port, protocol)])
    return True


def _server_args(
    service_address: str,
    service_port: int,
    address: str,
    port: int | None,
    protocol: str,
    forwarding: str,
    weight: int,
) -> list[str]:
    svc = _service_args(service_address, service_port, protocol)
    server = check_server(
        {
            "address": address,
            "port": service_port if port is None else port,
            "forwarding": forwarding,
            "weight": weight,
        },
        check_port(service_port, "service port"),
    )
    return [
        *svc,
        "-r",
        _endpoint(server["address"], server["port"]),
        FORWARDING[server["forwarding"]],
        "-w",
        str(server["weight"]),
    ]


def add_server(
    service_address: str,
    service_port: int,
    address: str,
    port: int | None = None,
    protocol: str = "tcp",
    forwarding: str = "dr",
    weight: int = 1,
) -> bool:
    """Add a real server to a virtual service (port: the service's unless given; only ``nat``
    may use another).

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.add_server 172.30.0.200 5000 172.30.0.31 forwarding=dr weight=1
    """
    _run(
        [
            "-a",
            *_server_args(
                service_address, service_port, address, port, protocol, forwarding, weight
            ),
        ]
    )
    return True


def edit_server(
    service_address: str,
    service_port: int,
    address: str,
    port: int | None = None,
    protocol: str = "tcp",
    forwarding: str = "dr",
    weight: int = 1,
) -> bool:
    """Change a real server's forwarding method and weight.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.edit_server 172.30.0.200 5000 172.30.0.31 weight=0
    """
    _run(
        [
            "-e",
            *_server_args(
                service_address, service_port, address, port, protocol, forwarding, weight
            ),
        ]
    )
    return True


def delete_server(
    service_address: str,
    service_port: int,
    address: str,
    port: int | None = None,
    protocol: str = "tcp",
) -> bool:
    """Remove a real server from a virtual service.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.delete_server 172.30.0.200 5000 172.30.0.31
    """
    svc = _service_args(service_address, service_port, protocol)
    address = check_address(address, "real server address")
    port = check_port(service_port if port is None else port, f"port of real server {address}")
    _run(["-d", *svc, "-r", _endpoint(address, port)])
    return True


def _health_problem(url: str) -> str | None:
    """Why the health URL does not answer 200, or None when it does."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (cluster-internal http)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:  # refused, timed out, unreachable: the server is not up yet
        return f"its health URL {url} did not answer ({exc})"
    return None if status == 200 else f"its health URL {url} answered {status}"


def wait_for_server(
    service_address: str,
    service_port: int,
    address: str,
    port: int | None = None,
    health_url: str | None = None,
    timeout: float = 120,
    interval: float = 1,
    protocol: str = "tcp",
) -> dict[str, Any]:
    """Wait until a real server is in service: its health URL (if given) answers 200, and the
    virtual service lists it with a weight above 0. Returns the table's entry for it and how long
    that took; raises, naming what was still missing, when ``timeout`` seconds pass.

    A readiness gate for rolling work on real servers (``orch.registry_gc`` flips one registry at
    a time): the health URL catches a server that restarted too quickly for the director's own
    checks to notice, the table shows that the director sends it connections again.

    CLI Example:

    .. code-block:: bash

        salt lvs1 ipvs.wait_for_server 172.30.0.200 5000 172.30.0.31 \\
            health_url=http://172.30.0.31:5001/debug/health timeout=60
    """
    protocol = check_protocol(protocol)
    service_address = check_address(service_address, "service address")
    service_port = check_port(service_port, "service port")
    address = check_address(address, "real server address")
    port = check_port(service_port if port is None else port, f"port of real server {address}")
    try:
        timeout = float(timeout)
        interval = float(interval)
    except (TypeError, ValueError):
        raise SaltInvocationError(
            f"timeout {timeout!r} and interval {interval!r} must be numbers of seconds"
        ) from None
    if timeout <= 0 or interval <= 0:
        raise SaltInvocationError(f"timeout {timeout} and interval {interval} must be above 0")
    virtual, real = _endpoint(service_address, service_port), _endpoint(address, port)
    started = time.monotonic()
    while True:
        problem = _health_problem(health_url) if health_url else None
        if problem is None:
            svc = service(service_address, service_port, protocol)
            entry = next(
                (
                    s
                    for s in (svc or {}).get("servers", [])
                    if (s["address"], s["port"]) == (address, port)
                ),
                None,
            )
            if svc is None:
                problem = f"the director has no virtual service {virtual}"
            elif entry is None:
                problem = "it is not in the director's table"
            elif entry["weight"] <= 0:
                problem = f"its weight in the director's table is {entry['weight']}"
            else:
                waited = round(time.monotonic() - started, 1)
                return {"server": entry, "waited": waited}
        if time.monotonic() - started >= timeout:
            raise CommandExecutionError(
                f"real server {real} of {virtual} is not in service after {timeout:g} s: {problem}"
            )
        time.sleep(interval)
