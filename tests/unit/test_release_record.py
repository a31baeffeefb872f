"""The release record (saltyard/release/record.py): the steps, resuming, refusing."""

from __future__ import annotations

import pytest

from saltyard.release import record
from saltyard.release.plan import load_app
from saltyard.release.record import Record, ReleaseRefused, begin
from tests.unit.test_release_plan import ENVS, GOOD

PLAN = load_app("hello", GOOD, ENVS)
STEPS = [
    "build",
    "deploy-fat",
    "deploy-uat",
    "promote",
    "canary-1",
    "canary-2",
    "canary-3",
    "rollout",
]


def run_until(rec: Record, last: str) -> None:
    """Do the steps up to and including ``last``."""
    while True:
        step = rec.next_step()
        rec.start(step.name, 1.0)
        rec.finish(step.name, 2.0)
        if step.name == last:
            return


def test_the_steps_follow_the_environments_and_the_canary_plan():
    assert record.step_names(PLAN, ENVS) == STEPS
    # Two environments: one deployment before production.
    assert record.step_names(PLAN, ["test", "live"])[:3] == ["build", "deploy-test", "promote"]
    with pytest.raises(ValueError, match="no environments"):
        record.step_names(PLAN, [])


def test_a_new_release_starts_at_build_and_ends_rolled_out():
    rec, todo = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    assert todo and rec.next_step().name == "build" and rec.outcome == record.RUNNING
    run_until(rec, "rollout")
    assert rec.next_step() is None
    assert rec.outcome == record.ROLLED_OUT


def test_a_killed_run_resumes_at_the_first_step_not_done():
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    run_until(rec, "promote")
    rec.start("canary-1", 3.0)  # killed here, mid-step
    stored = Record.from_json(rec.to_json())
    again, todo = begin(stored, PLAN, ENVS, "abc123", "1.4.0", 20.0)
    assert todo
    assert again.next_step().name == "canary-1"
    assert again.step("promote").state == record.DONE


def test_a_failed_step_is_retried_by_a_rerun():
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    rec.start("build", 1.0)
    rec.fail("build", 2.0, "docker build exited 1")
    assert rec.step("build").detail["reason"] == "docker build exited 1"
    again, todo = begin(Record.from_json(rec.to_json()), PLAN, ENVS, "abc123", "1.4.0", 3.0)
    assert todo and again.next_step().name == "build"


def test_a_finished_release_rerun_has_nothing_to_do():
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    run_until(rec, "rollout")
    again, todo = begin(Record.from_json(rec.to_json()), PLAN, ENVS, "abc123", "1.4.0", 30.0)
    assert not todo
    assert again.outcome == record.ROLLED_OUT


def test_a_rolled_back_release_is_finished_and_the_next_version_starts_fresh():
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    run_until(rec, "promote")
    rec.start("canary-1", 3.0)
    rec.roll_back("canary-1", 4.0, "canary 5xx share 0.3 is above max_5xx_share 0.01")
    assert rec.outcome == record.ROLLED_BACK
    # The same release again: nothing to do (fix it and release a new version).
    _, todo = begin(rec, PLAN, ENVS, "abc123", "1.4.0", 5.0)
    assert not todo
    fresh, todo = begin(rec, PLAN, ENVS, "def456", "1.4.1", 6.0)
    assert todo and fresh.next_step().name == "build" and fresh.version == "1.4.1"


@pytest.mark.parametrize(("ref", "version"), [("abc123", "1.4.0"), ("def456", "1.4.1")])
def test_a_release_stopped_by_its_build_blocks_nothing(ref, version):
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    rec.start("build", 1.0)
    rec.stop("build", 2.0, "ref 'abc123' does not exist in git://x/hello.git")
    assert rec.outcome == record.STOPPED
    # Nothing was deployed: the same release (its build again) or another starts afresh.
    fresh, todo = begin(Record.from_json(rec.to_json()), PLAN, ENVS, ref, version, 3.0)
    assert todo and fresh.next_step().name == "build" and fresh.version == version


@pytest.mark.parametrize(("ref", "version"), [("def456", "1.4.0"), ("abc123", "1.5.0")])
def test_another_release_while_one_is_in_progress_is_refused(ref, version):
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    run_until(rec, "deploy-fat")
    with pytest.raises(ReleaseRefused) as refused:
        begin(rec, PLAN, ENVS, ref, version, 11.0)
    message = str(refused.value)
    assert "version 1.4.0 (ref abc123) is in progress at step deploy-uat" in message
    assert f"version {version} (ref {ref})" in message


def test_steps_run_only_in_order_and_not_after_the_end():
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    with pytest.raises(ValueError, match="'promote' is not the next one"):
        rec.start("promote", 1.0)
    run_until(rec, "rollout")
    with pytest.raises(ValueError, match="rolled-out already"):
        rec.start("rollout", 1.0)


def test_the_record_survives_json_with_its_details():
    rec, _ = begin(None, PLAN, ENVS, "abc123", "1.4.0", 10.0)
    rec.start("build", 1.0)
    rec.finish("build", 2.0, sha="abc123" * 6 + "ab", image="saltyard/hello:abc")
    back = Record.from_json(rec.to_json())
    assert back == rec
    assert back.step("build").detail["image"] == "saltyard/hello:abc"
