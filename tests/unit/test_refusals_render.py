"""Render-time refusals, as Salt renders the states for a node of the shipped inventory (local
site): each bad value stops the SLS before any state exists, with a message that names it.

These are checked here rather than on the local cluster, since a refusal at render time does
not depend on the node; tests/convergence/test_bad_input.py keeps one in-cluster example (the
log driver) to show that such a refusal stops a real highstate with nothing changed.
"""

from __future__ import annotations

import pytest

from tests.state_render import RenderRefused, StateRenderer, state_args


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    # What the master's saltyard_pki ext_pillar serves (the base role requires it).
    pki = {"ca": "CA", "docker_clients_ca": "CLIENTS-CA", "node": {"cert": "C", "key": "K"}}
    return StateRenderer(
        tmp_path_factory.mktemp("render-refusals-agent"),
        "agent-fat",
        pillar={"pki": pki},
        grains={"virtual": "container"},
    )


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    return StateRenderer(tmp_path_factory.mktemp("render-refusals-control"), "control1")


@pytest.mark.parametrize("driver", ["gelf", "fluentd", ""])
def test_an_unsupported_log_driver_is_refused(agent, driver):
    with pytest.raises(RenderRefused) as refused:
        agent.show_sls("docker", pillar={"docker": {"log_driver": driver}})
    message = str(refused.value)
    assert f'pillar docker:log_driver is "{driver}"' in message, message
    assert "syslog" in message and "journald" in message, message


@pytest.mark.parametrize("driver", ["syslog", "json-file"])
def test_a_supported_log_driver_renders(agent, driver):
    rendered = agent.show_sls("docker", pillar={"docker": {"log_driver": driver}})
    assert state_args(rendered, "docker-daemon-config")["dataset"]["log-driver"] == driver


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.pid_max", "fs.file-max"])
def test_a_host_sysctl_in_a_container_is_refused(agent, key):
    with pytest.raises(RenderRefused) as refused:
        agent.show_sls("base.sysctl", pillar={"base": {"sysctl": {key: 1}}})
    message = str(refused.value)
    assert f"pillar base:sysctl:{key}: this node is a container" in message, message


def test_a_host_sysctl_on_a_machine_renders(tmp_path):
    machine = StateRenderer(tmp_path, "agent-fat", grains={"virtual": "kvm"})
    rendered = machine.show_sls("base.sysctl", pillar={"base": {"sysctl": {"vm.swappiness": 1}}})
    assert "sysctl-vm.swappiness" in rendered


@pytest.mark.parametrize("quorum", [2, 3])
def test_a_zookeeper_quorum_that_does_not_match_the_ensemble_is_refused(control, quorum):
    # The shipped inventory has one zookeeper node (control1): its quorum is 1.
    with pytest.raises(RenderRefused) as refused:
        control.show_sls("zookeeper", pillar={"zookeeper": {"quorum": quorum}})
    message = str(refused.value)
    assert f"pillar zookeeper:quorum is {quorum} but an ensemble of 1 members" in message, message


def test_the_quorum_of_the_ensemble_renders(control):
    rendered = control.show_sls("zookeeper", pillar={"zookeeper": {"quorum": 1}})
    assert rendered
