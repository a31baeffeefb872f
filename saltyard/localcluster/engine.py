"""The local Docker engine and the cluster's Docker network."""

from __future__ import annotations

import shlex
import threading
import uuid
from collections import defaultdict

import docker
import docker.errors

from saltyard.inventory import Inventory, InventoryError
from saltyard.localcluster.progress import step


def client() -> docker.DockerClient:
    try:
        engine = docker.from_env(timeout=300)
        engine.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeError(
            f"no Docker engine answers ({exc}); run `make up`, which starts one "
            "(scripts/host-setup.sh)"
        ) from None
    return engine


class OutputLost(RuntimeError):
    """``docker exec`` returned without a command's output, and it could not be read back."""


# Every exec: the command's output goes to a file that is printed after it, then an end marker
# with the exit status. A missing marker means the engine lost the stream, which it does now and
# then for a short command (docker/docker-py#2042, moby/moby#27289: the command ends before the
# output is attached, and exec returns exit 0 with nothing); the file still holds the output,
# so it is read again instead of running the command twice. Files of outputs already delivered
# are removed by the next exec in the same container, so that no exec costs a second one.
# The command comes in the environment, not as the wrapper's arguments: the wrapper's command
# line must not hold the command's text, or a `pkill -f <pattern>` run through it would match
# (and kill) the wrapper itself.
_WRAPPER = (
    "out=$SALTYARD_EXEC_OUT; end=$SALTYARD_EXEC_END; "
    'eval "set -- $SALTYARD_EXEC_ARGV"; rm -f $SALTYARD_EXEC_DONE; '
    "unset SALTYARD_EXEC_DONE SALTYARD_EXEC_OUT SALTYARD_EXEC_END SALTYARD_EXEC_ARGV; "
    '"$@" >"$out" 2>&1; rc=$?; cat "$out"; printf \'%s %d\\n\' "$end" "$rc"; exit "$rc"'
)
# One environment string may hold at most 128 KiB (Linux's MAX_ARG_STRLEN).
_MAX_ARGV = 120_000
_READ_BACK = 'cat "$1" && printf \'%s\\n\' "$2" && rm -f "$1"'
_READ_ATTEMPTS = 3


class ContainerExec:
    """``run(container, cmd)``: a command in a running container, its exit status and its
    whole output (stdout and stderr as they came), never a silently empty one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delivered: dict[str, list[str]] = defaultdict(list)

    def run(self, container, cmd: list[str]) -> tuple[int, str]:
        token = uuid.uuid4().hex
        out_file = f"/tmp/saltyard-exec-{token}.out"
        end = f"__saltyard_exec_end_{token}__"
        with self._lock:
            done, self._delivered[container.id] = self._delivered[container.id], []
        argv = " ".join(shlex.quote(arg) for arg in cmd)
        if len(argv) > _MAX_ARGV:
            raise ValueError(
                f"{container.name}: a command of {len(argv)} characters ({argv[:80]}...) is "
                f"longer than one exec can carry ({_MAX_ARGV}); copy large data as a file"
            )
        code, raw = container.exec_run(
            ["/bin/sh", "-c", _WRAPPER],
            demux=False,
            environment={
                "SALTYARD_EXEC_ARGV": argv,
                "SALTYARD_EXEC_DONE": " ".join(done),
                "SALTYARD_EXEC_OUT": out_file,
                "SALTYARD_EXEC_END": end,
            },
        )
        text = raw.decode(errors="replace") if raw else ""
        marker = text.rfind(end)
        if marker >= 0:
            with self._lock:
                self._delivered[container.id].append(out_file)
            return code, text[:marker]
        for _ in range(_READ_ATTEMPTS):
            again_code, again = container.exec_run(
                ["/bin/sh", "-c", _READ_BACK, "sh", out_file, end], demux=False
            )
            again_text = again.decode(errors="replace") if again else ""
            marker = again_text.rfind(end)
            if marker >= 0:
                return code, again_text[:marker]
        raise OutputLost(
            f"{container.name}: {' '.join(cmd)} exited {code}, and docker exec returned "
            f"{text[-300:]!r} without the end of its output; reading {out_file} back "
            f"{_READ_ATTEMPTS} times failed too (last: exit {again_code}, {again_text[-300:]!r})"
        )


def ensure_network(engine: docker.DockerClient, inv: Inventory) -> None:
    """Create the cluster network with the inventory's subnet, or check the existing one."""
    net = inv.network
    name = net["name"]
    # Docker's name filter matches substrings ("saltyard" finds "saltyard-vmtest"): compare.
    existing = [n for n in engine.networks.list(names=[name]) if n.name == name]
    if existing:
        configs = existing[0].attrs.get("IPAM", {}).get("Config") or []
        subnets = {c.get("Subnet") for c in configs}
        if net["subnet"] not in subnets:
            raise InventoryError(
                f"Docker network {name!r} exists with subnet(s) {sorted(subnets)}, but the "
                f"inventory says {net['subnet']}; remove it (`make down`) or fix the inventory"
            )
        return
    step(f"creating Docker network {name} ({net['subnet']})")
    ipam = docker.types.IPAMConfig(
        pool_configs=[
            docker.types.IPAMPool(
                subnet=net["subnet"], gateway=net.get("gateway"), iprange=net.get("ip_range")
            )
        ]
    )
    engine.networks.create(name, driver="bridge", ipam=ipam, labels={"saltyard.cluster": inv.name})
