"""The kernel rollout runner's refusals of bad run input (_runners/saltyard_kernel.py), before
anything is asked of a node; the rollout itself runs on the local cluster
(tests/convergence/test_kernel_rollout.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "saltyard_kernel", REPO / "_runners/saltyard_kernel.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load()
PILLAR = {
    "saltyard": {
        "nodes": [
            {"name": "lvs1", "roles": ["lvs"]},
            {"name": "agent-fat", "roles": ["mesos-agent", "docker", "kernel"]},
        ]
    }
}


def test_targets_keep_their_order_and_roles():
    targets = runner._targets(PILLAR, ["agent-fat", "lvs1"])
    assert [(t.name, t.agent, t.docker) for t in targets] == [
        ("agent-fat", True, True),
        ("lvs1", False, False),
    ]
    assert [t.name for t in runner._targets(PILLAR, "lvs1,agent-fat")] == [
        "lvs1",
        "agent-fat",
    ]


@pytest.mark.parametrize(
    "targets,message",
    [
        (
            ["lvs1", "nosuch"],
            "targets ['nosuch'] are not in the inventory (nodes: agent-fat, lvs1)",
        ),
        ([], "targets=[]: name the nodes to upgrade"),
        (None, "targets=None: name the nodes to upgrade"),
        (["lvs1", "lvs1"], "targets name ['lvs1'] more than once"),
    ],
)
def test_bad_targets_are_refused_naming_them(targets, message):
    with pytest.raises(ValueError) as refused:
        runner._targets(PILLAR, targets)
    assert message in str(refused.value)


@pytest.mark.parametrize("value", [0, -1, 4000, "60", True, None])
def test_a_timeout_out_of_range_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=rf"reboot_timeout={value!r}: expected a number"):
        runner._number("reboot_timeout", value, 5, 3600)


def test_the_runs_kernel_override():
    assert runner._kernel(None) is None and runner._kernel({}) is None
    wanted = {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}
    assert runner._kernel(wanted) == wanted
    for bad in (
        {"package": "linux-image-6.12-cloud-amd64"},
        {**wanted, "release": 6.12},
        "6.12",
        {**wanted, "version": "1"},
    ):
        with pytest.raises(ValueError, match="expected {package"):
            runner._kernel(bad)
