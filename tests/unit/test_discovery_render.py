"""The discovery state (the Marathon-to-Consul bridge), rendered by Salt on the host for control1:
the bridge's command line carries the inventory's environments (cluster.environments), so an
environment a site adds reaches the bridge without a second list."""

from __future__ import annotations

import yaml

from tests.state_render import StateRenderer, state_args

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


def exec_start(renderer: StateRenderer) -> list[str]:
    unit = state_args(renderer.show_sls("discovery"), "bridge-unit")["contents"]
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
