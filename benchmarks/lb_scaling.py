"""Benchmark: failed requests while an app is scaled under an open-model load (issue 12 item 9).

    .venv/bin/python benchmarks/lb_scaling.py [--rate 200] [--seconds 60] [--changes 9]
                                              [--app graceful|http.server]

Runs on the host-level stack of tests/lb (tests/lb/lbstack.py): the Marathon-API emulator with
tasks as containers on the host's Docker engine, the bridge, Consul 1.8.7 with ACLs, the real
consul-template and nginx on a loopback port, with the files that states/lb ships. vegeta
(scripts/build-vegeta.sh) sends ``--rate`` requests/s for ``--seconds`` through nginx with the
app's Host (``GET /id``, keep-alive, 5 s timeout), while the app is scaled ``--changes`` times
between 1 and 4 instances with plain PUTs (no force; a PUT refused because the previous
deployment still runs is tried again). A failure is any answer other than 200, or none.
Goal: 0 failed of at least 10 000.

``--app graceful`` (the default) runs tests/lb/graceful_server.py, which honours SIGTERM as
docs/lb.md asks (keeps serving for 2 s, then exits) and takes 50 ms per answer (header at once,
body after); ``--app no-drain`` is the same server exiting at once on SIGTERM; ``--app
http.server`` runs ``python -m http.server``, which dies at once. Tasks get ``cpus`` 1.
Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' support code: tests.lb, tests.support

from saltyard.localcluster import vegeta  # noqa: E402
from tests.lb import lbstack  # noqa: E402

APP = "/lbbench/scale"
SERVICE = "lbbench-scale"
SEQUENCE = [4, 1, 3, 1, 4, 2, 4, 1, 3, 2, 4, 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the load")
    parser.add_argument("--changes", type=int, default=9, help="scale changes during the load")
    parser.add_argument(
        "--app", choices=["graceful", "no-drain", "http.server"], default="graceful"
    )
    args = parser.parse_args()
    if not 1 <= args.rate <= 500 or not 10 <= args.seconds <= 300:
        parser.error("bounded load only: --rate 1..500, --seconds 10..300")
    if not 1 <= args.changes <= len(SEQUENCE):
        parser.error(f"--changes 1..{len(SEQUENCE)}")

    print(f"lb scaling benchmark, {datetime.date.today()}, {platform.node()}")
    with tempfile.TemporaryDirectory(prefix="saltyard-lbscale-") as tmp:
        with lbstack.LbStack(Path(tmp)) as stack:
            # cpus 1: Docker CPU shares 1024, as much as any other container on the machine.
            if args.app in ("graceful", "no-drain"):
                drain = "2" if args.app == "graceful" else "0"
                app = lbstack.backend_app(
                    APP,
                    1,
                    graceful=True,
                    task_env={"RESPONSE_SECONDS": "0.05", "DRAIN_SECONDS": drain},
                    cpus=1,
                )
            else:
                app = lbstack.backend_app(APP, 1, cpus=1)
            stack.marathon.update_app(APP, app, force=True)
            host = stack.host(SERVICE)
            lbstack.wait_served(stack, host, 1)
            # Changes spread over the load, none in its first or last 2 s.
            interval = (args.seconds - 4) / args.changes
            print(
                f"{args.rate} req/s for {args.seconds:g} s through nginx ({host}), "
                f"{args.changes} scale changes every {interval:.1f} s, app {args.app}",
                flush=True,
            )
            access_log = stack.nginx.prefix / "logs" / "access.log"
            skip = len(access_log.read_text().splitlines())  # the requests before the load
            events = lbstack.TaskEvents(stack.marathon, APP)
            attack = vegeta.Attack(
                stack.nginx.url + "/id",
                host=host,
                rate=args.rate,
                duration=args.seconds,
                workdir=Path(tmp),
            )
            stop = threading.Event()
            start = time.monotonic()
            changes = lbstack.scale_through(
                stack.marathon, APP, SEQUENCE[: args.changes], interval, stop
            )
            result = attack.result()
            print(result.summary())
            print(
                "scale changes (s after the start: instances): "
                + ", ".join(f"{at - start:.1f}: {n}" for at, n in changes)
            )
            print(f"tasks that answered: {len(result.bodies)}; events: {events.summary()}")
            for error, count in result.errors.most_common(10):
                print(f"  failed {count}x: {error[:200]}")
            for failure in result.failures[:20]:
                print(
                    f"  at {failure['at']:.2f} s: {failure['code']} after "
                    f"{1000 * failure['latency']:.0f} ms {failure['error'][:120]}"
                )
            problems = lbstack.nginx_problems(
                (stack.nginx.prefix / "logs" / "error.log").read_text()
            )
            print(f"nginx error.log: {sum(problems.values())} [error]/[warn] lines")
            for text, count in sorted(problems.items(), key=lambda kv: -kv[1])[:10]:
                print(f"  {count}x {text[:200]}")
            access = access_log.read_text().splitlines()[skip:]
            slow = [line for line in access if " 200 " not in line[:40]]
            print(f"nginx access.log: {len(access)} lines, {len(slow)} not 200")
            for line in slow[:10]:
                print("  " + line)
            ok = result.failed == 0 and result.requests >= 10_000
            print(
                f"goal 0 failed of >= 10000: {'met' if ok else 'MISSED'} "
                f"({result.failed} failed of {result.requests})"
            )
            stack.marathon.delete_app(APP, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
