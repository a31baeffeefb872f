"""Agents: a hostname, a Docker engine, attributes, a host-port range. Tasks are containers.

Spec syntax (``--agent``): ``NAME=DOCKER_URL[:k=v,k=v,...]``. Keys starting with ``@`` configure
the emulator instead of being Mesos attributes:

- ``@ports=31000-32000``: the host-port range random ports are taken from (default 31000-32000);
- ``@address=IP``: where the emulator reaches the task's host ports for health checks (default
  127.0.0.1 for a unix socket, the URL's host for tcp://);
- ``@bind=IP``: the host IP published ports bind to in BRIDGE mode (default: all addresses);
- ``@role=ROLE``: the agent's resources are reserved for ROLE (a static reservation, a Mesos
  agent's ``--default_role``): only apps whose ``acceptedResourceRoles`` name ROLE run there, and
  only when the emulator registers with that role (``--mesos-role``), as Marathon does.
"""

from __future__ import annotations

import random
import shlex
import threading
import urllib.parse
from dataclasses import dataclass, field

import docker
import docker.errors
import docker.tls

from .placement import UNRESERVED, AgentInfo, role_error

LABEL = "saltyard.marathon-emulator"


class AgentSpecError(ValueError):
    pass


@dataclass
class Agent:
    name: str
    url: str
    attributes: dict[str, str]
    port_range: tuple[int, int] = (31000, 32000)
    address: str = "127.0.0.1"
    bind: str = ""
    role: str = UNRESERVED
    slave_id: str = ""
    # Client certificate and CA for a tcp:// engine that requires TLS (dockerd --tlsverify).
    tls: docker.tls.TLSConfig | None = field(default=None, repr=False)
    _client: docker.DockerClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def parse(cls, spec: str) -> Agent:
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            raise AgentSpecError(f"agent spec {spec!r}: expected NAME=DOCKER_URL[:k=v,...]")
        url, attrs = rest, ""
        head, colon, tail = rest.rpartition(":")
        if colon and "=" in tail and "://" in head + ":":
            url, attrs = head, tail
        if "://" not in url:
            raise AgentSpecError(
                f"agent {name}: docker URL {url!r} needs a scheme (unix://, tcp://)"
            )
        agent = cls(name=name, url=url, attributes={})
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "tcp" and parsed.hostname:
            agent.address = parsed.hostname
        for item in filter(None, attrs.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise AgentSpecError(f"agent {name}: attribute {item!r} is not k=v")
            if key == "@ports":
                lo, dash, hi = value.partition("-")
                try:
                    agent.port_range = (int(lo), int(hi))
                except ValueError:
                    raise AgentSpecError(f"agent {name}: @ports wants LOW-HIGH") from None
                if not dash or not 0 < agent.port_range[0] <= agent.port_range[1] < 65536:
                    raise AgentSpecError(f"agent {name}: bad port range {value!r}")
            elif key == "@address":
                agent.address = value
            elif key == "@bind":
                agent.bind = value
            elif key == "@role":
                if role_error(value):
                    raise AgentSpecError(f"agent {name}: @role: {role_error(value)}")
                agent.role = value
            elif key.startswith("@"):
                raise AgentSpecError(f"agent {name}: unknown option {key}")
            else:
                agent.attributes[key] = value
        agent.slave_id = f"emulated-agent-{name}"
        return agent

    @property
    def info(self) -> AgentInfo:
        return AgentInfo(self.name, dict(self.attributes), self.role)

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = docker.DockerClient(
                    base_url=self.url, timeout=60, tls=self.tls or False
                )
            return self._client

    def pick_ports(self, count: int, taken: set[int]) -> list[int]:
        lo, hi = self.port_range
        free = [p for p in range(lo, hi + 1) if p not in taken]
        if len(free) < count:
            raise RuntimeError(f"agent {self.name}: no free host ports in {lo}-{hi}")
        return random.sample(free, count)

    def list_task_containers(self, cluster: str):
        """Sparse listing (no per-container inspect, so no race with removals): use
        ``container_labels`` / ``container_state`` on the results."""
        return self.client.containers.list(
            all=True,
            sparse=True,
            filters={"label": [f"{LABEL}.cluster={cluster}", f"{LABEL}.agent={self.name}"]},
        )


def image_registry(image: str) -> str:
    """The registry an image reference pulls from (Docker's rule: the first path component is a
    registry host when it has a dot or a port, or is localhost)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def container_labels(container) -> dict[str, str]:
    return (
        container.attrs.get("Labels") or (container.attrs.get("Config") or {}).get("Labels") or {}
    )


def container_state(container) -> str:
    state = container.attrs.get("State")
    return state.get("Status", "") if isinstance(state, dict) else str(state or "")


DOCKER_PARAMETERS = {
    # docker run flag -> (SDK keyword, multi-valued)
    "label": ("labels", True),
    "env": ("environment", True),
    "hostname": ("hostname", False),
    "user": ("user", False),
    "workdir": ("working_dir", False),
    "add-host": ("extra_hosts", True),
    "dns": ("dns", True),
    "cap-add": ("cap_add", True),
    "cap-drop": ("cap_drop", True),
    "log-driver": ("log_config", False),
    "memory-swap": ("memswap_limit", False),
    "shm-size": ("shm_size", False),
    "ulimit": ("ulimits", True),
}


def container_networks(app: dict) -> list[str]:
    """The Docker networks a container-network app joins (``networks`` entries of mode
    ``container``, by name, in order); empty for host, bridge and no networking."""
    return [
        n.get("name") or ""
        for n in app.get("networks") or []
        if n.get("mode", "container") == "container"
    ]


def missing_networks(client: docker.DockerClient, names: list[str]) -> list[str]:
    """The names among ``names`` that are not networks of the engine (exact names: Docker's
    own lookup also matches id prefixes)."""
    missing = []
    for name in names:
        if not any(n.name == name for n in client.networks.list(names=[name])):
            missing.append(name)
    return missing


def container_ips(container, names: list[str]) -> list[str]:
    """The container's IPv4 addresses: on the networks ``names``, in that order; without
    names, its address on the first network that gave it one (Docker's default bridge)."""
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    if names:
        return [
            networks[name]["IPAddress"]
            for name in names
            if (networks.get(name) or {}).get("IPAddress")
        ]
    first = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None)
    return [first] if first else []


def docker_run_kwargs(
    app: dict,
    task_id: str,
    agent: Agent,
    host_ports: list[int | None],
    container_ports: list[int],
    labels: dict[str, str],
    env: dict[str, str],
    default_image: str | None,
    use_init: bool,
) -> dict:
    """Translate an app definition into ``containers.create`` keyword arguments.

    ``host_ports`` and ``container_ports`` are per port mapping, by index; a mapping whose host
    port is None publishes nothing. A container-network app is created on its first network
    (the caller connects it to the others before it starts)."""
    container = app.get("container") or {}
    dockerdef = container.get("docker") or {}
    image = dockerdef.get("image") or default_image
    if not image:
        raise ValueError("the app has no container image and the emulator has no --default-image")
    mode = (app.get("networks") or [{"mode": "host"}])[0]
    kwargs: dict = {
        "image": image,
        "name": "marathon-" + task_id.replace("_", "-"),
        "detach": True,
        "labels": dict(labels),
        "environment": dict(env),
        "init": use_init,
        "privileged": bool(dockerdef.get("privileged")),
    }
    if app.get("cmd") is not None:
        kwargs["entrypoint"] = ["/bin/sh", "-c"]
        kwargs["command"] = [app["cmd"]]
    elif app.get("args") is not None:
        kwargs["command"] = list(app["args"])
    if app.get("user"):
        kwargs["user"] = app["user"]
    if app.get("mem"):
        kwargs["mem_limit"] = f"{max(int(app['mem']), 6)}m"
    if app.get("cpus"):
        kwargs["cpu_shares"] = max(int(app["cpus"] * 1024), 2)
    net = mode.get("mode", "container")
    if net == "host":
        kwargs["network_mode"] = "host"
    elif net == "none":
        kwargs["network_mode"] = "none"
    elif net == "container" and mode.get("name"):
        kwargs["network"] = mode["name"]
    else:
        kwargs["network_mode"] = "bridge"
    if net != "host" and container.get("portMappings"):
        ports = {}
        for pm, hp, cp in zip(container["portMappings"], host_ports, container_ports, strict=True):
            if hp is None:
                continue  # a container port only: reached on the task's own address
            proto = pm.get("protocol", "tcp")
            for p in proto.split(","):
                ports[f"{cp}/{p}"] = (agent.bind, hp) if agent.bind else hp
        if ports:
            kwargs["ports"] = ports
    volumes = {}
    for vol in container.get("volumes") or []:
        if vol.get("hostPath") and vol.get("containerPath"):
            volumes[vol["hostPath"]] = {
                "bind": vol["containerPath"],
                "mode": "ro" if vol.get("mode", "RW") == "RO" else "rw",
            }
    if volumes:
        kwargs["volumes"] = volumes
    for param in dockerdef.get("parameters") or []:
        key, value = param.get("key"), str(param.get("value", ""))
        if key not in DOCKER_PARAMETERS:
            raise ValueError(f"docker parameter {key!r} is not supported by the emulator")
        kw, multi = DOCKER_PARAMETERS[key]
        if kw == "labels":
            k, _, v = value.partition("=")
            kwargs["labels"].setdefault(k, v)
        elif kw == "environment":
            k, _, v = value.partition("=")
            kwargs["environment"][k] = v
        elif kw == "extra_hosts":
            h, _, ip = value.partition(":")
            kwargs.setdefault("extra_hosts", {})[h] = ip
        elif kw == "log_config":
            kwargs["log_config"] = {"type": value}
        elif kw == "ulimits":
            name, _, limits = value.partition("=")
            soft, _, hard = limits.partition(":")
            kwargs.setdefault("ulimits", []).append(
                docker.types.Ulimit(name=name, soft=int(soft), hard=int(hard or soft))
            )
        elif multi:
            kwargs.setdefault(kw, []).append(value)
        else:
            kwargs[kw] = value
    return kwargs


def describe_exit(container) -> str:
    state = container.attrs.get("State", {})
    code = state.get("ExitCode")
    error = state.get("Error") or ""
    try:
        tail = container.logs(tail=5).decode(errors="replace").strip()
    except docker.errors.APIError:
        tail = ""
    msg = f"Container exited with status {code}"
    if error:
        msg += f": {error}"
    if tail:
        msg += " (last output: " + shlex.quote(tail[-400:]) + ")"
    return msg
