"""``python -m saltyard.marathon_emulator --listen 127.0.0.1:8080 --agent NAME=URL:k=v,...``"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

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
        "@bind=IP configure the emulator); repeatable",
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
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        agents = [Agent.parse(spec) for spec in args.agent]
    except AgentSpecError as exc:
        parser.error(str(exc))
    host, port = args.listen
    emulator = Emulator(
        agents,
        args.state_file,
        cluster=args.cluster_name,
        leader=f"{host}:{port}",
        default_image=args.default_image,
        use_init=not args.no_docker_init,
        kill_grace=args.kill_grace,
    )
    server = make_server(emulator, host, port)
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
