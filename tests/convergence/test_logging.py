"""The logging pipeline in the local cluster (docs/logging.md): task containers on the three
agents → each engine's syslog driver → the agent's rsyslog → RELP → log1's rsyslog spool → Flume
(TAILDIR, file channel) → /var/log/saltyard/apps/<env>/<app>/<day>.log.

Every test counts lines: the tasks write numbered lines (``logtest <run> <n> <time>``) when asked
over HTTP, and each number must arrive exactly once per env (duplicates, which RELP may make after
a reconnect, are reported separately and tolerated; a missing number fails). Flume restarted, the
log node stopped for 30 s, an agent's rsyslog restarted, each in the middle of a burst: 0 lost.
"""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import time
import uuid

import pytest
import requests

from tests.convergence.logging_run import (
    APP,
    APPS_DIR,
    ENVS,
    LOG_NODE,
    arrived,
    deploy,
    remove,
    start_burst,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def marathon(cluster, converged) -> str:
    return next(n.name for n in cluster.nodes if n.has_role("marathon"))


@pytest.fixture(scope="module")
def tasks(cluster, marathon, registry_image) -> dict[str, dict]:
    """One emitting task per env: {env: {"id", "host", "url"}}."""
    yield deploy(cluster, marathon, registry_image)
    remove(cluster, marathon)


def wait_all(cluster, run: str, count: int, timeout: float) -> dict[str, collections.Counter]:
    """Until every number of ``run`` arrived for every env; fails naming what is missing."""
    last: dict[str, collections.Counter] = {}

    def complete():
        nonlocal last
        last = arrived(cluster, run)
        return all(len(last[env]) >= count for env in ENVS) and last

    try:
        return wait_until(complete, timeout=timeout, interval=2, message=f"all lines of {run}")
    except AssertionError:
        missing = {env: count - len(last.get(env, ())) for env in ENVS}
        raise AssertionError(
            f"run {run}: lines missing per env after {timeout} s: {missing}"
        ) from None


def assert_none_lost(counts: dict[str, collections.Counter], count: int) -> dict[str, int]:
    """Every number 0..count-1 once or more per env; returns the duplicates per env."""
    duplicates = {}
    for env in ENVS:
        lost = [n for n in range(count) if counts[env][n] == 0]
        assert not lost, f"{env}: {len(lost)} of {count} lines lost (first: {lost[:10]})"
        extra = sorted(n for n in counts[env] if n >= count)
        assert not extra, f"{env}: numbers never written arrived: {extra[:10]}"
        duplicates[env] = sum(c - 1 for c in counts[env].values())
    print(f"duplicates per env (RELP may resend after a reconnect): {duplicates}")
    return duplicates


class Serving:
    """Requests every task's HTTP endpoint once a second in the background; counts failures."""

    def __init__(self, tasks: dict) -> None:
        self.tasks, self.failures, self.requests = tasks, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1):
            for env, task in self.tasks.items():
                self.requests += 1
                try:
                    requests.get(task["url"], timeout=3).raise_for_status()
                except requests.RequestException as exc:
                    self.failures.append((env, time.time(), str(exc)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def new_run() -> str:
    return uuid.uuid4().hex[:10]


def test_every_line_arrives_attributed(cluster, tasks):
    run, count = new_run(), 2000
    start_burst(tasks, run, count, rate=500)
    assert_none_lost(wait_all(cluster, run, count, timeout=120), count)
    # Each line names the env, the app, the agent and the task it came from.
    _, text = cluster.exec(
        LOG_NODE,
        ["sh", "-c", f"grep -h ' logtest {run} 7 ' {APPS_DIR}/*/{APP}/*.log"],
    )
    fields = {line.split()[1]: line.split()[:5] for line in text.splitlines()}
    for env, task in tasks.items():
        _, line_env, app, host, task_id = fields[env]
        assert (line_env, app, host, task_id) == (env, APP, task["host"], task["id"])


def test_applog_reads_an_apps_lines_and_the_counters(cluster, tasks):
    run, count = new_run(), 50
    start_burst({"fat": tasks["fat"]}, run, count, rate=100)
    wait_until(
        lambda: len(arrived(cluster, run)["fat"]) == count, timeout=60, message="fat's lines"
    )
    lines = cluster.salt([LOG_NODE], "applog.tail", APP, "fat", "lines=10")[LOG_NODE]
    assert [line.split()[7] for line in lines] == [str(n) for n in range(count - 10, count)]
    assert all(line.split()[6] == run for line in lines)
    unknown = cluster.salt([LOG_NODE], "applog.tail", "no-such-app", "fat")[LOG_NODE]
    assert "no lines of app 'no-such-app' in env 'fat'" in str(unknown)
    stats = cluster.salt([LOG_NODE], "applog.stats")[LOG_NODE]
    assert stats["lines_written"] >= count and stats["lines_in"] >= stats["lines_written"] - 1
    assert 0 <= stats["channel_fill_percent"] < 100
    assert stats["spool"]["spool_files"] >= 1


def test_flume_restarted_mid_burst_loses_nothing(cluster, tasks):
    run, count = new_run(), 12000
    start_burst(tasks, run, count, rate=1500)  # 8 s per env, 4 500 lines/s in all
    time.sleep(3)
    cluster.exec(LOG_NODE, ["systemctl", "restart", "saltyard-flume"])
    assert_none_lost(wait_all(cluster, run, count, timeout=180), count)


def test_agent_rsyslog_restarted_mid_burst_loses_nothing(cluster, tasks):
    run, count = new_run(), 6000
    start_burst(tasks, run, count, rate=1000)
    time.sleep(2)
    cluster.exec(tasks["fat"]["host"], ["systemctl", "restart", "rsyslog"])
    assert_none_lost(wait_all(cluster, run, count, timeout=120), count)


def test_log_node_away_for_30_s_loses_nothing_and_tasks_keep_serving(cluster, tasks):
    run, count = new_run(), 9000
    with Serving(tasks) as serving:
        start_burst(tasks, run, count, rate=200)  # 45 s per env
        time.sleep(5)
        subprocess.run(["docker", "stop", "-t", "20", f"saltyard-{LOG_NODE}"], check=True)
        stopped = time.monotonic()
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
        subprocess.run(["docker", "start", f"saltyard-{LOG_NODE}"], check=True)
        counts = wait_all(cluster, run, count, timeout=240)
    assert_none_lost(counts, count)
    assert serving.requests > 60
    assert not serving.failures, f"tasks stopped serving: {serving.failures[:5]}"


def test_malformed_lines_do_not_stop_the_pipeline(cluster, tasks):
    run = new_run()
    requests.get(f"{tasks['fat']['url']}/raw", params={"run": run}, timeout=5).raise_for_status()
    wait_until(lambda: arrived(cluster, run)["fat"][2] >= 1, timeout=60, message="the line after")
    _, text = cluster.exec(
        LOG_NODE, ["sh", "-c", f"grep -ah ' logtest {run} ' {APPS_DIR}/fat/{APP}/*.log"]
    )
    lines = text.splitlines()
    binary = next(line for line in lines if f" logtest {run} 0 " in line)
    # rsyslog escapes control characters (#ooo); bytes of 0x80 and above pass as they are.
    assert "bin#001#002" in binary
    # The engine splits a line longer than 16 KiB into pieces of 16 KiB, each a line of its own.
    first = [line for line in lines if f" logtest {run} 1 " in line]
    _, text = cluster.exec(
        LOG_NODE,
        ["sh", "-c", f"grep -ahE '^[^ ]+ fat {APP} [^ ]+ [^ ]+ y+$' {APPS_DIR}/fat/{APP}/*.log"],
    )
    rest = [line for line in text.splitlines() if tasks["fat"]["id"] in line]
    pieces = [first[0].split(" logtest ")[1]] + [line.split()[5] for line in rest]
    assert len(first) == 1 and len(pieces) == 5, [len(p) for p in pieces]
    assert all(len(piece) <= 16384 for piece in pieces)
    assert sum(piece.count("y") for piece in pieces) == 65536
    # An empty line carries nothing and is not delivered; the line after it is.
    assert [line for line in lines if f" logtest {run} 2 after" in line]


def state_apply(cluster, pillar: dict) -> dict | list:
    return cluster.salt([LOG_NODE], "state.apply", "logging", f"pillar={json.dumps(pillar)}")[
        LOG_NODE
    ]


def flume_now(cluster) -> tuple[str, str]:
    """The live flume.conf and the agent's main PID."""
    _, conf = cluster.exec(LOG_NODE, ["cat", "/etc/saltyard-flume/flume.conf"])
    _, pid = cluster.exec(LOG_NODE, ["systemctl", "show", "-p", "MainPID", "saltyard-flume"])
    return conf, pid.strip()


def test_bad_pillar_is_refused_and_flume_keeps_its_configuration(cluster, converged):
    before = flume_now(cluster)
    assert before[1] != "MainPID=0"
    # Refused when the state renders: nothing runs.
    refused = state_apply(cluster, {"logging": {"flume": {"sink": {"type": "nosuch"}}}})
    refused_text = "\n".join(refused) if isinstance(refused, list) else str(refused)
    assert "pillar logging:flume:sink:type is 'nosuch'" in refused_text
    # Good pillar, but a configuration Flume would not run: its own loader refuses the candidate
    # before it replaces the live file, and the running agent is not restarted.
    result = state_apply(
        cluster, {"logging": {"flume": {"sink": {"options": {"type": "nosuch.Sink"}}}}}
    )
    failed = {v["__id__"]: v["comment"] for v in result.values() if v["result"] is False}
    assert "unknown type 'nosuch.Sink'" in failed["logging-flume-config"], failed
    assert flume_now(cluster) == before
