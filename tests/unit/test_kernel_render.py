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


# --- kernel:boot: the kernel a node boots (docs/kernel.md) -------------------------------------

BOOT = {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}


def test_the_local_site_names_no_kernel_and_no_package_means_no_boot_state(agent):
    # The local site leaves the kernel to each rollout (kernel_rollout:kernel, docs/kernel.md):
    # no highstate there installs one.
    local = agent.show_sls("kernel")
    assert "kernel-boot" not in local and "kernel-apt-source" not in local
    rendered = agent.show_sls("kernel", pillar={"kernel": {"boot": {"package": "", "release": ""}}})
    assert "kernel-boot" not in rendered and "kernel-apt-source" not in rendered
    named = state_args(agent.show_sls("kernel", pillar={"kernel": {"boot": BOOT}}), "kernel-boot")
    assert (named["name"], named["release"]) == ("linux-image-6.12-cloud-amd64", "6.12")


def test_a_boot_package_installs_after_the_minimum_check_and_stops_the_run_on_failure(agent):
    rendered = agent.show_sls("kernel", pillar={"kernel": {"boot": BOOT}})
    boot = state_args(rendered, "kernel-boot")
    assert boot["fun"] == "kernel_boot.installed"
    assert (boot["name"], boot["release"], boot["min_version"]) == (
        "linux-image-6.12-cloud-amd64",
        "6.12",
        "4.4.27",
    )
    assert boot["order"] == 2 and boot["failhard"] is True
    assert {"kernel_check": "kernel-min-version"} in boot["require"]
    assert "kernel-apt-source" not in rendered


def test_a_boot_source_is_written_before_the_install(agent):
    source = "deb http://deb.debian.org/debian bookworm-backports main"
    rendered = agent.show_sls("kernel", pillar={"kernel": {"boot": {**BOOT, "source": source}}})
    written = state_args(rendered, "kernel-apt-source")
    assert written["name"] == "/etc/apt/sources.list.d/saltyard-kernel.list"
    assert written["contents"] == source
    assert {"file": "kernel-apt-source"} in state_args(rendered, "kernel-boot")["require"]


@pytest.mark.parametrize(
    "boot,message",
    [
        (
            {"package": "linux-image-6.12-cloud-amd64", "release": "4.4.0"},
            'pillar kernel:boot:release "4.4.0" is older than kernel:min_version "4.4.27"',
        ),
        (
            {"package": "linux-image-6.12-cloud-amd64", "release": 6.12},
            "pillar kernel:boot:release is 6.12; give the oldest release",
        ),
        (
            {"package": "linux-image-6.12-cloud-amd64", "release": ""},
            'pillar kernel:boot:release is ""; give the oldest release',
        ),
        (
            {"package": "", "release": "6.12"},
            'pillar kernel:boot:package is "" while kernel:boot:release is set',
        ),
        (
            {"package": "linux-image-6.12-cloud-amd64", "release": "six"},
            "not a kernel release: 'six'",
        ),
        (
            {
                **BOOT,
                "source": "deb [signed-by=/usr/share/keyrings/k.gpg] https://k.example/ b main",
            },
            "names keyring /usr/share/keyrings/k.gpg (signed-by) but no state writes it",
        ),
        ({**BOOT, "flavour": "cloud"}, "flavour"),
    ],
)
def test_a_bad_boot_kernel_is_refused_at_render_time_naming_it(agent, boot, message):
    with pytest.raises(RenderRefused) as refused:
        agent.show_sls("kernel", pillar={"kernel": {"boot": boot}})
    assert message in str(refused.value)
