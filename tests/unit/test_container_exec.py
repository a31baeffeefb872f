"""engine.ContainerExec, the one way Cluster.exec runs a command in a container node: its wrapper
runs in a real /bin/sh here, and the fake container loses the output of chosen calls the way
docker exec does now and then (exit 0, nothing printed: docker/docker-py#2042)."""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

from saltyard.localcluster.engine import ContainerExec, OutputLost


class LossyContainer:
    """Runs each exec with /bin/sh on this host; ``lose`` holds the numbers of the calls whose
    output the 'engine' drops."""

    id = "lossy"
    name = "saltyard-lossy"

    def __init__(self, lose=()):
        self.lose = set(lose)
        self.calls: list[list[str]] = []

    def exec_run(self, cmd, demux=False, environment=None):
        self.calls.append(cmd)
        env = {"PATH": os.environ["PATH"], **(environment or {})}
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if len(self.calls) in self.lose:
            return done.returncode, b""
        return done.returncode, done.stdout


@pytest.fixture(autouse=True)
def no_leftover_files():
    before = set(glob.glob("/tmp/saltyard-exec-*.out"))
    yield
    # Whatever a test left is its own last output (removed by the next exec in real use).
    for path in set(glob.glob("/tmp/saltyard-exec-*.out")) - before:
        os.remove(path)


def test_output_and_exit_status_come_back_as_the_command_gave_them():
    runner, box = ContainerExec(), LossyContainer()
    assert runner.run(box, ["sh", "-c", "echo out; echo err >&2; printf 'no newline'"]) == (
        0,
        "out\nerr\nno newline",
    )
    assert runner.run(box, ["sh", "-c", "echo failing; exit 3"]) == (3, "failing\n")
    assert runner.run(box, ["true"]) == (0, "")
    # Arguments reach the command as they are (no shell splitting).
    assert runner.run(box, ["printf", "%s|", "a b", "$HOME", "'q'"]) == (0, "a b|$HOME|'q'|")


def test_a_pkill_by_pattern_does_not_match_the_wrapper():
    """The wrapper's command line does not hold the command's text: `pkill -f <pattern>` run
    through it finds no process here (exit 1) instead of killing the wrapper (137)."""
    runner, box = ContainerExec(), LossyContainer()
    assert runner.run(box, ["pkill", "-KILL", "-f", "no-process-has-this-7d1c0b"]) == (1, "")


def test_a_command_too_long_for_one_exec_is_refused_before_it_runs():
    runner, box = ContainerExec(), LossyContainer()
    with pytest.raises(ValueError, match="longer than one exec can carry"):
        runner.run(box, ["printf", "x" * 130_000])
    assert box.calls == []


def test_the_wrappers_variables_do_not_reach_the_command():
    runner, box = ContainerExec(), LossyContainer()
    code, text = runner.run(box, ["env"])
    assert code == 0
    assert "SALTYARD_EXEC" not in text


def test_a_lost_output_is_read_back_and_the_command_runs_once(tmp_path):
    counter = tmp_path / "runs"
    runner, box = ContainerExec(), LossyContainer(lose={1})
    code, text = runner.run(box, ["sh", "-c", f"echo run >> {counter}; echo the answer; exit 2"])
    assert (code, text) == (2, "the answer\n")
    assert counter.read_text() == "run\n"
    assert len(box.calls) == 2  # the command, then one read of its file


def test_delivered_outputs_are_removed_by_the_next_exec():
    runner, box = ContainerExec(), LossyContainer()
    runner.run(box, ["echo", "first"])
    first = set(glob.glob("/tmp/saltyard-exec-*.out"))
    assert first, "the first output's file stays until the next exec"
    runner.run(box, ["echo", "second"])
    now = set(glob.glob("/tmp/saltyard-exec-*.out"))
    assert not first & now
    assert len(now - first) == 1


def test_an_output_that_cannot_be_read_back_is_an_error_naming_the_command():
    runner, box = ContainerExec(), LossyContainer(lose={1, 2, 3, 4})
    with pytest.raises(OutputLost, match=r"saltyard-lossy: echo lost exited 0, and docker exec"):
        runner.run(box, ["echo", "lost"])
    assert len(box.calls) == 4
