"""``python -m saltyard.marathon_emulator --listen 127.0.0.1:8080 --agent NAME=URL:k=v,...``"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import docker.tls

from .agents import Agent, AgentSpecError
from .core import Emulator
from .server import make_server


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m saltyard.marathon_emulator",
        description="Marathon REST API v2 emulator (development stand-in; not Marathon).",
    )
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080))
    parser.add_argument(
        "--agent",
        action="append",
        required=True,
        metavar="NAME=DOCKER_URL[:k=v,...]",
        help="an agent: hostname, Docker engine URL, attributes (@ports=LO-HI, @address=IP, "
        "@bind=IP, @role=ROLE configure the emulator); repeatable",
    )
    parser.add_argument(
        "--mesos-role",
        default="*",
        help="Marathon's --mesos_role: besides unreserved resources it is offered the agents "
        "reserved for this role (@role=)",
    )
    parser.add_argument(
        "--default-accepted-resource-roles",
        metavar="ROLE[,ROLE...]",
        help="Marathon's --default_accepted_resource_roles: the roles an app without "
        "acceptedResourceRoles runs on (default: '*' and the --mesos-role)",
    )
    parser.add_argument("--state-file", help="JSON file the app definitions persist to")
    parser.add_argument(
        "--cluster-name",
        default="default",
        help="label value that separates this emulator's containers from other emulators'",
    )
    parser.add_argument(
        "--default-image", help="image for apps without a container (command tasks)"
    )
    parser.add_argument(
        "--no-docker-init",
        action="store_true",
        help="do not run tasks under docker's init (tini); SIGTERM then reaches PID 1 directly",
    )
    parser.add_argument(
        "--kill-grace", type=float, default=3.0, help="default stop timeout, seconds"
    )
    parser.add_argument(
        "--tls-ca", help="CA bundle that tcp:// agent engines' certificates are checked against"
    )
    parser.add_argument("--tls-cert", help="client certificate for tcp:// agent engines")
    parser.add_argument("--tls-key", help="the client certificate's key")
    parser.add_argument(
        "--pull-from",
        action="append",
        default=[],
        metavar="REGISTRY",
        help="a registry (host[:port]) the agents may pull task images from; repeatable. Images "
        "from any other registry must already be on the agent's engine",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        agents = [Agent.parse(spec) for spec in args.agent]
    except AgentSpecError as exc:
        parser.error(str(exc))
    tls_args = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(tls_args):
        if not all(tls_args):
            parser.error("--tls-ca, --tls-cert and --tls-key go together")
        tls = docker.tls.TLSConfig(
            client_cert=(args.tls_cert, args.tls_key), ca_cert=args.tls_ca, verify=True
        )
        for agent in agents:
            if agent.url.startswith("tcp://"):
                agent.tls = tls
    # Like Marathon, which reads MARATHON_<FLAG> from its environment: user:password for HTTP
    # basic auth on every endpoint. From the environment, so it never shows in `ps`.
    credentials = os.environ.get("MARATHON_HTTP_CREDENTIALS") or None
    if credentials is not None and ":" not in credentials:
        parser.error("MARATHON_HTTP_CREDENTIALS must be user:password")
    # The registry user the agents pull with (what a Mesos agent's docker config would hold).
    pull_auth = None
    registry_credentials = os.environ.get("SALTYARD_REGISTRY_CREDENTIALS")
    if registry_credentials:
        user, sep, password = registry_credentials.partition(":")
        if not sep or not user:
            parser.error("SALTYARD_REGISTRY_CREDENTIALS must be user:password")
        pull_auth = {"username": user, "password": password}
    default_roles = None
    if args.default_accepted_resource_roles:
        default_roles = tuple(r.strip() for r in args.default_accepted_resource_roles.split(","))
    host, port = args.listen
    try:
        emulator = Emulator(
            agents,
            args.state_file,
            cluster=args.cluster_name,
            leader=f"{host}:{port}",
            default_image=args.default_image,
            use_init=not args.no_docker_init,
            kill_grace=args.kill_grace,
            pull_from=tuple(args.pull_from),
            pull_auth=pull_auth,
            mesos_role=args.mesos_role,
            default_accepted_roles=default_roles,
        )
    except ValueError as exc:  # a bad role: named, before anything starts
        parser.error(str(exc))
    server = make_server(emulator, host, port, credentials=credentials)
    emulator.start()
    stopping = threading.Event()

    def shutdown(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    logging.getLogger("saltyard.marathon_emulator").info(
        "listening on http://%s:%d with agents %s", host, port, ", ".join(a.name for a in agents)
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        emulator.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
