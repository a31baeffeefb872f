"""The release workflow in the cluster (issue 14): `orch.release` takes the example app from a
commit on the master's git server to production, through build1, FAT and UAT with smoke tests,
promotion, the gray release behind lb1 and the rollout; a bad commit is rolled back at its first
canary step with the stable app untouched. Under steady load through lb1 (vegeta, open model):
the good release fails no request, the bad one fails only canary requests, at most its share,
and none after the rollback.

The tests run in order on one app: the first release (no stable app yet: straight to the
rollout), a good release, the same release again (nothing to do), a bad release with a second
release refused while it runs, test mode, a release killed after its promotion and resumed, and
the refusals of bad input (an unknown app, a bad version, decreasing shares, a missing ref, a
version released before). Canary windows are shortened by
the run's pillar (as an operator may) to keep the suite short.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from saltyard.localcluster import vegeta
from saltyard.localcluster.cluster import RELEASE_BASE
from tests.convergence import release_run
from tests.convergence.release_run import APP, Events, commit, orchestrate, runner_return, status

pytestmark = pytest.mark.cluster

RATE = 50  # requests/s through lb1 during a release
# Two short canary windows; the gate is that of pillar/release/hello.sls but for the smaller
# counts of a 10 s window at RATE, and p99 limits with room for a loaded 2-core machine.
PLAN = {
    "canary": {
        "steps": [{"share": 20, "window": 10}, {"share": 50, "window": 10}],
        "gate": {"max_5xx_share": 0.05, "p99_ms": 3000, "min_requests": 20, "margin": 2.0},
        "inconclusive": "fail",
    }
}


def release_pillar(version: str, ref: str = "main", **extra) -> dict:
    """orch.release's pillar, with this module's shorter canary windows."""
    return release_run.release_pillar(version, ref, plan=PLAN, **extra)


# Canary shares that go down: refused by the release data's checks.
DECREASING = {
    "apps": {APP: {"canary": {"steps": [{"share": 50, "window": 10}, {"share": 20, "window": 10}]}}}
}


@pytest.fixture(scope="module")
def marathon(cluster):
    node = next(n.name for n in cluster.nodes if n.has_role("marathon"))

    def app(app_id: str) -> dict | None:
        if not cluster.salt([node], "marathon_api.exists", app_id)[node]:
            return None
        return cluster.salt([node], "marathon_api.app", app_id)[node]

    return app


@pytest.fixture(scope="module")
def lb(cluster) -> str:
    node = next(n for n in cluster.nodes if n.has_role("lb"))
    return f"http://{node.address}"


@pytest.fixture(scope="module")
def released(cluster, converged) -> dict:
    """The base image in the registry, then the first release of the seeded commit."""
    cluster.push_node_image(RELEASE_BASE)
    code, step = orchestrate(cluster, release_pillar("1.0.0"))
    return {"code": code, "step": step}


def version_through(lb: str, env: str) -> str:
    host = f"{APP}.{env}.saltyard.test"
    return requests.get(f"{lb}/version", headers={"Host": host}, timeout=5).text.strip()


def test_the_first_release_goes_to_production(cluster, released, marathon, lb):
    assert released["code"] == 0, released
    outcome = runner_return(released["step"])
    assert outcome.get("outcome") == "rolled-out", released
    steps = {s["name"]: s for s in outcome["record"]["steps"]}
    assert list(steps) == [
        "build",
        "deploy-fat",
        "deploy-uat",
        "promote",
        "canary-1",
        "canary-2",
        "rollout",
    ]
    assert all(s["state"] == "done" for s in steps.values()), steps
    # No stable app to compare a canary with: the gray release was skipped, and said why.
    assert "first release" in steps["canary-1"]["detail"]["skipped"]
    vip = cluster.pillar(cluster.inventory.master.name, "registry:vip:address")
    image = marathon(f"/prod/{APP}")["container"]["docker"]["image"]
    assert image == f"{vip}:5000/saltyard/{APP}:1.0.0"
    for env in ("fat", "uat", "prod"):
        assert version_through(lb, env) == "1.0.0", env


def test_a_good_release_under_load_fails_no_request(cluster, released, marathon, lb, tmp_path):
    assert released["code"] == 0, released
    sha = commit(cluster, "1.1.0")
    events = Events(cluster, "good")
    load = vegeta.Attack(
        f"{lb}/", host=f"{APP}.prod.saltyard.test", rate=RATE, duration=290, workdir=tmp_path
    )
    try:
        code, step = orchestrate(cluster, release_pillar("1.1.0", ref=sha))
    finally:
        load.stop()
        events.stop()
    result = load.result()
    assert code == 0, step
    outcome = runner_return(step)
    assert outcome.get("outcome") == "rolled-out", step
    record = outcome["record"]
    canary = [s for s in record["steps"] if s["name"].startswith("canary-")]
    assert all(s["detail"]["verdict"].startswith("pass") for s in canary), canary
    vip = cluster.pillar(cluster.inventory.master.name, "registry:vip:address")
    assert marathon(f"/prod/{APP}")["container"]["docker"]["image"] == (
        f"{vip}:5000/saltyard/{APP}:1.1.0"
    )
    assert marathon(f"/prod/{APP}-canary") is None
    assert version_through(lb, "prod") == "1.1.0"
    # Every step sent its events.
    tags = events.tags()
    for s in record["steps"]:
        assert f"saltyard/release/{APP}/{s['name']}/started" in tags, tags
        assert f"saltyard/release/{APP}/{s['name']}/done" in tags, tags
    # The load saw both versions and not one failed request.
    assert {"hello from 1.0.0", "hello from 1.1.0"} <= {b.strip() for b in result.bodies}, (
        result.summary()
    )
    assert result.requests >= RATE * 30, result.summary()
    assert result.failed == 0, f"{result.summary()}; first failures: {result.failures[:5]}"


def test_a_finished_release_run_again_changes_nothing(cluster, released, marathon):
    before = marathon(f"/prod/{APP}")["version"]
    sha = status(cluster)["ref"]
    code, step = orchestrate(cluster, release_pillar("1.1.0", ref=sha))
    assert code == 0, step
    assert runner_return(step).get("outcome") == "nothing-to-do", step
    assert marathon(f"/prod/{APP}")["version"] == before


def test_a_bad_release_is_rolled_back_and_a_second_run_refused(
    cluster, released, marathon, lb, tmp_path
):
    stable_before = marathon(f"/prod/{APP}")
    sha = commit(cluster, "1.2.0", error_share=0.5)
    events = Events(cluster, "bad")
    load = vegeta.Attack(
        f"{lb}/", host=f"{APP}.prod.saltyard.test", rate=RATE, duration=290, workdir=tmp_path
    )
    bad: dict = {}
    bad_pillar = release_pillar("1.2.0", ref=sha)
    run = threading.Thread(
        target=lambda: bad.update(
            zip(("code", "step"), orchestrate(cluster, bad_pillar), strict=True)
        )
    )
    run.start()
    try:
        # While it runs, another release of the app is refused, naming the one in progress.
        deadline = time.monotonic() + 120
        while not any(t.endswith("/build/started") for t in events.tags()):
            assert time.monotonic() < deadline, "the bad release never started its build"
            time.sleep(1)
        code, other = orchestrate(cluster, release_pillar("9.9.9"))
        assert code != 0, other
        refusal = json.dumps(other)
        assert "another release run holds" in refusal or "1.2.0" in refusal, refusal
        run.join(timeout=900)
    finally:
        load.stop()
        events.stop()
    result = load.result()
    assert bad["code"] != 0, bad
    assert "rolled back at canary-1" in json.dumps(bad["step"]), bad
    record = status(cluster)
    assert record["outcome"] == "rolled-back", record
    canary = next(s for s in record["steps"] if s["name"] == "canary-1")
    assert "max_5xx_share" in canary["detail"]["reason"], canary
    assert f"saltyard/release/{APP}/canary-1/rolled-back" in events.tags()
    # The stable app never changed, and the canary is gone.
    assert marathon(f"/prod/{APP}")["version"] == stable_before["version"]
    assert marathon(f"/prod/{APP}-canary") is None
    assert version_through(lb, "prod") == "1.1.0"
    # Failed requests: only the canary's 500s, at most its share of the window's requests,
    # and none once the share was back at 0.
    assert {f["code"] for f in result.failures} <= {500}, result.failures[:5]
    window = canary["ended"] - canary["started"]
    share = PLAN["canary"]["steps"][0]["share"] / 100
    assert result.failed <= share * RATE * (window + 2), (result.summary(), window)
    assert all(f["time"] <= canary["ended"] + 1 for f in result.failures), result.failures[-3:]


def test_test_mode_says_what_a_run_would_do_and_changes_nothing(cluster, released, marathon):
    before = (status(cluster), marathon(f"/prod/{APP}")["version"])
    code, step = orchestrate(cluster, release_pillar("1.4.0"), "test=True")
    assert code == 0, step
    plan = step.get("comment", "")
    assert f"release of {APP} 1.4.0 (ref main) starts" in plan, step
    for name in ("build", "deploy-fat", "deploy-uat", "promote", "canary-1", "rollout"):
        assert f"- {name}: to do" in plan, plan
    assert "- canary-2: to do: 50 % of hello.prod.saltyard.test" in plan, plan
    assert (status(cluster), marathon(f"/prod/{APP}")["version"]) == before


def test_a_release_killed_after_promotion_resumes_with_a_rerun(
    cluster, released, marathon, lb, tmp_path
):
    sha = commit(cluster, "1.3.0")
    pillar = release_pillar("1.3.0", ref=sha)
    master = cluster.inventory.master.name
    events = Events(cluster, "killed")
    cluster.exec(
        master,
        [
            "sh",
            "-c",
            f"nohup salt-run state.orchestrate orch.release pillar='{json.dumps(pillar)}' "
            "> /tmp/release-killed.txt 2>&1 &",
        ],
    )
    try:
        deadline = time.monotonic() + 300
        while f"saltyard/release/{APP}/promote/done" not in events.tags():
            assert time.monotonic() < deadline, "the release never finished its promote step"
            time.sleep(1)
        # The orchestration dies (the runner runs inside salt-run's process).
        cluster.exec(master, ["pkill", "-KILL", "-f", "state.orchestrate orch.release"])
        killed = status(cluster)
        assert killed["outcome"] == "running", killed
        done = [s["name"] for s in killed["steps"] if s["state"] == "done"]
        assert done == ["build", "deploy-fat", "deploy-uat", "promote"], killed
        # Test mode: the run would resume, and the rollout's Marathon diff is known (the
        # version's image is in the registry now).
        code, planned = orchestrate(cluster, pillar, "test=True")
        text = planned.get("comment", "")
        assert code == 0 and f"(ref {sha}) resumes" in text, planned
        assert "- promote: done" in text and "- canary-1: to do" in text, text
        assert f"app /prod/{APP} would be updated" in text, text
        # A re-run: refused while the dead run's lock lives (its session's TTL), then it
        # continues at canary-1 (under load: the gate needs requests) and rolls out.
        load = vegeta.Attack(
            f"{lb}/", host=f"{APP}.prod.saltyard.test", rate=RATE, duration=290, workdir=tmp_path
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                code, step = orchestrate(cluster, pillar)
                if "another release run holds" not in json.dumps(step):
                    break
                assert time.monotonic() < deadline, step
                time.sleep(5)
        finally:
            load.stop()
            result = load.result()
    finally:
        events.stop()
    assert result.failed == 0, f"{result.summary()}; first failures: {result.failures[:5]}"
    assert code == 0, step
    resumed = runner_return(step)["record"]
    assert resumed["outcome"] == "rolled-out", resumed
    steps = {s["name"]: s for s in resumed["steps"]}
    before = {s["name"]: s for s in killed["steps"]}
    for name in done:  # not done again
        assert steps[name]["started"] == before[name]["started"], (name, steps[name])
    assert events.tags().count(f"saltyard/release/{APP}/build/started") == 1, events.tags()
    assert marathon(f"/prod/{APP}")["container"]["docker"]["image"].endswith(":1.3.0")


@pytest.mark.parametrize(
    ("pillar", "named"),
    [
        ({"app": "nosuch", "ref": "main", "version": "1.0.0"}, "unknown app 'nosuch'"),
        (release_pillar("-v1"), "'-v1' is not a valid tag"),
        (release_pillar("2.0.0", release=DECREASING), "the shares must increase"),
        (release_pillar("2.0.0", ref="no-such-branch"), "'no-such-branch' does not exist"),
        # A version released before names a build for ever: another ref under it is refused.
        (release_pillar("1.1.0"), "version 1.1.0 of hello was released before"),
    ],
)
def test_bad_input_is_refused_by_name(cluster, released, marathon, pillar, named):
    before = marathon(f"/prod/{APP}")["version"]
    code, step = orchestrate(cluster, pillar)
    assert code != 0, step
    assert named in json.dumps(step), step
    assert marathon(f"/prod/{APP}")["version"] == before
