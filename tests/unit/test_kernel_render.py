"""The kernel state as Salt renders it for a node of the shipped inventory (local site): the
minimum comes from kernel/defaults.yaml unless pillar `kernel` overrides it, and a number (an
unquoted 4.10 reads as 4.1) is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.state_render import RenderRefused, StateRenderer, state_args

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return StateRenderer(tmp_path_factory.mktemp("render-kernel"), "agent-fat")


def test_the_default_minimum_reaches_the_state(agent):
    default = yaml.safe_load((REPO / "states" / "kernel" / "defaults.yaml").read_text())
    assert default["kernel"]["min_version"] == "4.4.27"
    check = state_args(agent.show_sls("kernel"), "kernel-min-version")
    assert check["fun"] == "kernel_check.min_version"
    assert check["name"] == "4.4.27"
    # First and fatal: a too-old kernel stops the run before any other state.
    assert check["order"] == 1 and check["failhard"] is True


def test_a_pillar_minimum_overrides_the_default(agent):
    rendered = agent.show_sls("kernel", pillar={"kernel": {"min_version": "5.10.0-28"}})
    assert state_args(rendered, "kernel-min-version")["name"] == "5.10.0-28"


@pytest.mark.parametrize("value,shown", [(4.1, "4.1"), (5, "5"), ("", '""')])
def test_a_minimum_that_is_not_a_release_string_is_refused(agent, value, shown):
    with pytest.raises(RenderRefused) as refused:
        agent.show_sls("kernel", pillar={"kernel": {"min_version": value}})
    assert f"pillar kernel:min_version is {shown};" in str(refused.value)
