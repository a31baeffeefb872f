"""Benchmark: request latency through lb1 to a task on the agents' macvlan network against the same
task behind a host port (issue 17).

    .venv/bin/python benchmarks/ipam_lb.py [--rate 200] [--seconds 30] [--rounds 2]

Needs a converged local cluster with the ipam role (`make up`); it does not bring one up. Two
apps of one instance each on agent-fat, the same image and server (tests/lb/graceful_server.py,
answering its task id): one on the `macvlan` network (lb1 reaches the task's own address and its
container port), one on Docker's BRIDGE network with a host port (lb1 reaches the agent's address
and the host port, which Docker forwards into the container). Both are created with the
marathon_application state and removed at the end.

vegeta (an open model: a constant ``--rate`` requests/s, keep-alive, 5 s timeout) sends
``GET /id`` through lb1 with each app's Host for ``--seconds``, the two apps alternately for
``--rounds`` rounds (so a drift of the machine hits both alike). Printed per attack: requests,
failures and latency p50/p95/p99/max. No goal: the issue asks for the comparison.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.convergence

from saltyard.localcluster import vegeta  # noqa: E402
from saltyard.localcluster.cluster import Cluster  # noqa: E402
from tests.convergence.helpers import docker_app, push_test_image  # noqa: E402
from tests.lb import lbstack  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

PORT = 8080
# tests/lb/graceful_server.py: answers /id with its task id, listens on PORT0 (on a container
# network the emulator sets it to the container port, as Marathon does) with a backlog of 1024.
# python's http.server keeps Python's default backlog of 5, and under 200 new connections a
# second from nginx an overflowing backlog costs a SYN retransmit (1 s) and a 504.
CMD = 'exec python3 -c "$SALTYARD_TEST_SERVER"'
APPS = {
    "macvlan": ("/ipambench/macvlan", "ipambench-macvlan"),
    "host port": ("/ipambench/hostport", "ipambench-hostport"),
}


def definitions(image: str, network: str) -> dict[str, dict]:
    health = {"protocol": "HTTP", "path": "/id", "portIndex": 0, "intervalSeconds": 2}
    server = {"SALTYARD_TEST_SERVER": lbstack.GRACEFUL_SERVER.read_text()}
    hostport = docker_app(APPS["host port"][0], image, 1, env="fat", cmd=CMD, health_check=health)
    hostport["env"] = server
    macvlan = {
        "id": APPS["macvlan"][0],
        "cmd": CMD,
        "env": server,
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "constraints": [["env", "CLUSTER", "fat"]],
        "networks": [{"mode": "container", "name": network}],
        "container": {
            "type": "DOCKER",
            "docker": {"image": image},
            "portMappings": [{"containerPort": PORT, "name": "http"}],
        },
        "healthChecks": [health],
    }
    return {"macvlan": macvlan, "host port": hostport}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.rate <= 500 or not 5 <= args.seconds <= 120 or not 1 <= args.rounds <= 5:
        parser.error("bounded load only: --rate 1..500, --seconds 5..120, --rounds 1..5")
    if not vegeta.BINARY.exists():
        parser.error(f"{vegeta.BINARY} is missing: run scripts/build-vegeta.sh")

    cluster = Cluster(profile=os.environ.get("SALTYARD_TEST_PROFILE", "full"))
    lb = next(n for n in cluster.nodes if n.has_role("lb"))
    control = next(n for n in cluster.nodes if n.has_role("marathon"))
    agent = next(n for n in cluster.nodes if n.has_role("mesos-agent") and n.env == "fat")
    domain = cluster.pillar(lb.name, "saltyard:cluster:domain")
    network = cluster.pillar(agent.name, "ipam:network:name") or "macvlan"
    if not domain or not cluster.pillar(agent.name, "ipam:pools"):
        raise SystemExit("no converged local cluster with the ipam role answers (`make up`)")
    print(
        f"# benchmarks/ipam_lb.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores; {args.rate} requests/s for {args.seconds:g} s per attack"
    )
    image = push_test_image(cluster)
    lb_url = f"http://{lb.address}"
    hosts = {mode: f"{service}.fat.{domain}" for mode, (_, service) in APPS.items()}
    try:
        for app in definitions(image, network).values():
            out = cluster.salt(
                [control.name],
                "state.single",
                "marathon_application.present",
                f"name={app['id']}",
                f"app={json.dumps(app)}",
                "timeout=240",
            )[control.name]
            (ret,) = out.values()
            if ret["result"] is not True:
                raise SystemExit(f"{app['id']} could not be created: {ret['comment']}")

        def served(mode: str) -> bool:
            try:
                r = requests.get(f"{lb_url}/id", headers={"Host": hosts[mode]}, timeout=2)
            except requests.RequestException:
                return False
            return r.status_code == 200 and r.text.startswith("ipambench_")

        for mode in APPS:
            wait_until(lambda mode=mode: served(mode), 180, 0.5, f"{hosts[mode]} served by lb1")
        tasks = cluster.salt([control.name], "marathon_api.tasks", APPS["macvlan"][0])[control.name]
        addresses = [a["ipAddress"] for t in tasks for a in t.get("ipAddresses") or []]
        print(f"macvlan task at {', '.join(addresses)}:{PORT}; host-port task on {agent.name}")

        failed = 0
        for round_ in range(1, args.rounds + 1):
            for mode in APPS:
                result = vegeta.attack(
                    f"{lb_url}/id", host=hosts[mode], rate=args.rate, duration=args.seconds
                )
                failed += result.failed
                print(f"round {round_} {mode:9}: {result.summary()}", flush=True)
        return 1 if failed else 0
    finally:
        for app_id, _ in APPS.values():
            cluster.salt(
                [control.name],
                "state.single",
                "marathon_application.absent",
                f"name={app_id}",
                "force=True",
            )


if __name__ == "__main__":
    sys.exit(main())
