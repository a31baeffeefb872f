"""The discovery state (the Marathon-to-Consul bridge), rendered by Salt on the host for control1:
the bridge's command line carries the inventory's environments (cluster.environments), so an
environment a site adds reaches the bridge without a second list."""

from __future__ import annotations

import pytest
import yaml

from tests.state_render import RenderRefused, StateRenderer, state_args

# What the master generates for control1 (a consul server) besides the inventory.
PILLAR = {
    "pki": {"ca": "CA", "node": {"cert": "CERT", "key": "KEY"}},
    "consul": {
        "encrypt": "bm90LWEta2V5LW5vdC1hLWtleS1ub3QtYS1rZXk=",
        "acl": {
            "master_token": "not-a-token",
            "tokens": {
                t: "not-a-token"
                for t in ("agent", "discovery", "lb", "release", "ipam", "ipam_read")
            },
        },
    },
}


def exec_start(renderer: StateRenderer, pillar: dict | None = None) -> list[str]:
    unit = state_args(renderer.show_sls("discovery", pillar=pillar), "bridge-unit")["contents"]
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


def test_the_bridge_gets_the_shipped_environments(tmp_path):
    argv = exec_start(StateRenderer(tmp_path, "control1", pillar=PILLAR))
    assert argv[argv.index("--environments") + 1] == "fat,uat,prod"


def test_the_bridge_gets_a_sites_own_environments(tmp_path):
    from tests.state_render import REPO

    data = yaml.safe_load((REPO / "salt" / "inventory.yaml").read_text())
    data["cluster"]["environments"] = ["fat", "uat", "staging", "prod"]
    agent = next(n for n in data["nodes"] if n["name"] == "agent-uat")
    agent["env"] = "staging"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    renderer = StateRenderer(tmp_path / "render", "control1", inventory, pillar=PILLAR)
    argv = exec_start(renderer)
    assert argv[argv.index("--environments") + 1] == "fat,uat,staging,prod"


def test_the_bridge_restarts_when_the_saltyard_code_changes(tmp_path):
    import sys

    from tests.support.salt_loader import load_module

    rendered = StateRenderer(tmp_path, "control1", pillar=PILLAR).show_sls("discovery")
    code = state_args(rendered, "bridge-code")
    # The digest of the code the bridge's interpreter imports (here: this one's).
    runtime = load_module("_modules", "saltyard_runtime")
    assert code["contents"] == runtime.code_digest(sys.executable)
    watched = [dict(w) for w in state_args(rendered, "saltyard-bridge")["watch"]]
    assert {"file": "bridge-code"} in watched


def test_the_local_site_frees_ipam_allocations_after_a_short_grace(tmp_path):
    argv = exec_start(StateRenderer(tmp_path, "control1", pillar=PILLAR))
    assert "--ipam-reconcile" in argv
    assert argv[argv.index("--ipam-grace") + 1] == "20"


def test_ipam_reconciliation_is_off_unless_the_pillar_turns_it_on(tmp_path):
    off = {"discovery": {"ipam_reconcile": {"enabled": False}}}
    argv = exec_start(StateRenderer(tmp_path, "control1", pillar=PILLAR), off)
    assert "--ipam-reconcile" not in argv and "--ipam-grace" not in argv
    # The shipped default (defaults.yaml) is off too: a site that sets nothing runs without it.
    from tests.state_render import REPO

    defaults = yaml.safe_load((REPO / "states" / "discovery" / "defaults.yaml").read_text())
    assert defaults["discovery"]["ipam_reconcile"] == {"enabled": False, "grace": 300}


@pytest.mark.parametrize("grace", [0, -5, "soon", True])
def test_a_bad_ipam_grace_is_refused_naming_the_value(tmp_path, grace):
    bad = {"discovery": {"ipam_reconcile": {"enabled": True, "grace": grace}}}
    with pytest.raises(RenderRefused) as refused:
        exec_start(StateRenderer(tmp_path, "control1", pillar=PILLAR), bad)
    assert f"pillar discovery:ipam_reconcile:grace {grace}: expected a number of seconds > 0" in (
        str(refused.value)
    )
