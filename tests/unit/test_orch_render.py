"""The orchestration SLS files rendered with Salt for the master of the local inventory: the
steps, their order and their requisites (what the cluster tests then run for real)."""

from __future__ import annotations

import pytest

from tests.state_render import StateRenderer, state_args


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    return StateRenderer(tmp_path_factory.mktemp("orch"), "master")


def requisites(args: dict, kind: str) -> list[str]:
    return [f"{k}: {v}" for item in args.get(kind, []) for k, v in item.items()]


def test_registry_gc_flips_one_registry_at_a_time_behind_a_readiness_gate(master):
    rendered = master.show_sls("orch.registry_gc")
    # Read-only in turn, each flip waiting for the one before to be back in the director's table.
    assert requisites(state_args(rendered, "read-only-registry2"), "require") == [
        "test: ready-read-only-registry1"
    ]
    assert requisites(state_args(rendered, "collect"), "require") == [
        "test: ready-read-only-registry2"
    ]
    assert requisites(state_args(rendered, "read-write-registry1"), "require") == ["salt: collect"]
    assert requisites(state_args(rendered, "read-write-registry2"), "require") == [
        "test: ready-read-write-registry1"
    ]
    for phase in ("read-only", "read-write", "restore"):
        for node, address in (("registry1", "172.30.0.31"), ("registry2", "172.30.0.32")):
            gate = state_args(rendered, f"ready-{phase}-{node}-on-lvs1")
            assert gate["fun"] == "salt.function" and gate["name"] == "ipvs.wait_for_server"
            assert gate["tgt"] == "lvs1"
            assert gate["arg"] == ["172.30.0.200", 5000, address]
            assert gate["kwarg"]["health_url"] == f"http://{address}:5001/debug/health"
            assert requisites(gate, "require") == [f"salt: {phase}-{node}"]
            assert requisites(gate, "require_in") == [f"test: ready-{phase}-{node}"]


def test_registry_gc_restores_read_write_only_when_the_collection_failed(master):
    rendered = master.show_sls("orch.registry_gc")
    first, second = (state_args(rendered, f"restore-{n}") for n in ("registry1", "registry2"))
    assert requisites(first, "onfail") == ["salt: collect"]
    assert requisites(second, "onfail") == ["salt: collect"]
    assert requisites(second, "require") == ["test: ready-restore-registry1"]
    # The gates of a restore that did not run must not wait either.
    for step in ("ready-restore-registry1", "ready-restore-registry1-on-lvs1"):
        assert requisites(state_args(rendered, step), "onfail") == ["salt: collect"]
    assert "pillar" not in first, "restore must put the registry back to read-write"
    assert state_args(rendered, "read-only-registry1")["pillar"] == {
        "registry": {"read_only": True}
    }


def test_release_hands_the_runner_the_apps_data_from_the_orchestrations_pillar(master):
    import yaml

    from tests.state_render import REPO

    hello = yaml.safe_load((REPO / "pillar" / "release" / "hello.sls").read_text())
    data = hello["release"]["apps"]["hello"]
    data["canary"]["steps"] = [{"share": 20, "window": 10}]  # a run's override
    rendered = master.show_sls(
        "orch.release",
        pillar={"app": "hello", "ref": "main", "version": "1.1.0", "release": hello["release"]},
    )
    step = state_args(rendered, "release-hello")
    assert step["fun"] == "salt.runner" and step["name"] == "saltyard_release.run"
    assert (step["app"], step["ref"], step["version"]) == ("hello", "main", "1.1.0")
    assert step["data"] == data


@pytest.mark.parametrize("missing", ["app", "ref", "version"])
def test_release_without_app_ref_or_version_is_refused_by_name(master, missing):
    from tests.state_render import RenderRefused

    pillar = {"app": "hello", "ref": "main", "version": "1.1.0"}
    del pillar[missing]
    with pytest.raises(RenderRefused) as refused:
        master.show_sls("orch.release", pillar=pillar)
    assert "orch.release needs app, ref and version" in str(refused.value)
    assert f'{missing}=""' in str(refused.value)


def test_agent_reset_drains_refusing_downtime_unless_the_run_accepts_it(master):
    # Without the flag the drain refuses an agent whose tasks have nowhere to go (the local
    # cluster has one agent per env); the run's own pillar, not the site's, may accept it.
    drain = state_args(
        master.show_sls("orch.mesos_agent_reset", pillar={"agent": "agent-fat"}), "drain"
    )
    assert drain["fun"] == "salt.function" and drain["name"] == "mesos.drain"
    assert drain["arg"] == ["agent-fat"]
    assert drain["kwarg"] == {"accept_downtime": False, "timeout": 300}
    accepted = master.show_sls(
        "orch.mesos_agent_reset",
        pillar={"agent": "agent-fat", "accept_downtime": True, "drain_timeout": 600},
    )
    assert state_args(accepted, "drain")["kwarg"] == {"accept_downtime": True, "timeout": 600}
    reset = state_args(accepted, "reset")
    assert requisites(reset, "require") == ["salt: drain"]


def test_agent_reset_refuses_an_accept_downtime_that_is_not_a_boolean(master):
    from tests.state_render import RenderRefused

    with pytest.raises(RenderRefused) as refused:
        master.show_sls(
            "orch.mesos_agent_reset", pillar={"agent": "agent-fat", "accept_downtime": "maybe"}
        )
    assert 'accept_downtime="maybe" must be true or false' in str(refused.value)


def test_kernel_rollout_hands_the_runner_the_runs_pillar(master):
    rendered = master.show_sls(
        "orch.kernel_rollout",
        pillar={
            "targets": ["lvs1", "agent-fat"],
            "reboot_timeout": 90,
            "kernel_rollout": {
                "kernel": {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}
            },
        },
    )
    step = state_args(rendered, "kernel-rollout")
    assert step["fun"] == "salt.runner" and step["name"] == "saltyard_kernel.rollout"
    assert step["targets"] == ["lvs1", "agent-fat"]
    assert (step["reboot_timeout"], step["drain_timeout"], step["accept_downtime"]) == (
        90,
        300,
        False,
    )
    assert step["kernel"] == {"package": "linux-image-6.12-cloud-amd64", "release": "6.12"}
