"""Static reservations from the inventory to the running services, rendered with Salt itself: an
agent's ``mesos_role`` (inventory) becomes its reservation (``mesos_agent.reservation``, Mesos's
``--default_role``) and the emulator's ``@role=``; ``marathon:mesos_role`` and
``marathon:default_accepted_resource_roles`` become Marathon's flags and the emulator's options.
Bad values are refused at render time, named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.state_render import RenderRefused, StateRenderer, state_args

REPO = Path(__file__).resolve().parents[2]
ROLE = "vm-agents"
PKI = {
    "ca": "CA",
    "docker_clients_ca": "CLIENTS-CA",
    "docker_client": {"cert": "C", "key": "K"},
    "node": {"cert": "C", "key": "K"},
}
SECRETS = {"pki": PKI, "marathon": {"http_credentials": {"password": "not-a-password"}}}
ROLES = {"marathon": {"mesos_role": ROLE, "default_accepted_resource_roles": ["*"]}}
NO_ROLES = {"marathon": {"mesos_role": "", "default_accepted_resource_roles": []}}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    """The shipped inventory with agent-prod reserved for ROLE."""
    data = yaml.safe_load((REPO / "salt" / "inventory.yaml").read_text())
    next(n for n in data["nodes"] if n["name"] == "agent-prod")["mesos_role"] = ROLE
    path = tmp_path_factory.mktemp("inventory") / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory, inventory):
    made: dict[str, StateRenderer] = {}

    def renderer(name: str) -> StateRenderer:
        if name not in made:
            made[name] = StateRenderer(
                tmp_path_factory.mktemp(f"render-{name}"),
                name,
                inventory_path=inventory,
                pillar=SECRETS,
                grains={"virtual": "container"},
            )
        return made[name]

    return renderer


def test_the_agents_reservation_follows_its_inventory_role(node):
    prod = state_args(node("agent-prod").show_sls("mesos.agent"), "mesos-agent-reservation")
    assert prod["fun"] == "mesos_agent.reservation"
    assert prod["name"] == "/etc/mesos-slave/default_role" and prod["role"] == ROLE
    assert prod["order"] == 1 and prod["failhard"] is True
    fat = state_args(node("agent-fat").show_sls("mesos.agent"), "mesos-agent-reservation")
    assert fat["role"] is None  # unreserved: the state removes any flag file


def test_a_default_role_flag_is_refused_in_favour_of_the_inventory(node):
    with pytest.raises(RenderRefused) as refused:
        node("agent-fat").show_sls(
            "mesos.agent", pillar={"mesos": {"agent": {"flags": {"default_role": "x"}}}}
        )
    assert "pillar mesos:agent:flags:default_role" in str(refused.value)
    assert "mesos_role in the inventory" in str(refused.value)


def test_marathon_and_the_emulator_get_the_role_and_the_default(node):
    rendered = node("control1").show_sls("marathon", pillar=ROLES)
    defaults = state_args(rendered, "marathon-defaults")["contents"]
    assert f"MARATHON_MESOS_ROLE={ROLE}\n" in defaults
    assert "MARATHON_DEFAULT_ACCEPTED_RESOURCE_ROLES=*\n" in defaults
    unit = state_args(rendered, "marathon-emulator-unit")["contents"]
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f"--mesos-role {ROLE} --default-accepted-resource-roles *" in exec_start
    agents = exec_start.split("--agent ")[1:]
    prod = next(a for a in agents if a.startswith("agent-prod="))
    assert prod.split()[0].endswith(f",@role={ROLE}"), prod
    # agent-vm is reserved in the shipped inventory itself; the other agents are not.
    vm = next(a for a in agents if a.startswith("agent-vm="))
    assert vm.split()[0].endswith(f",@role={ROLE}"), vm
    reserved = ("agent-prod=", "agent-vm=")
    assert not any("@role=" in a for a in agents if not a.startswith(reserved))

    # Without the pillar (the local site sets it: here it is emptied): no flag at all
    # (Marathon's defaults).
    plain = node("control1").show_sls("marathon", pillar=NO_ROLES)
    assert "MESOS_ROLE" not in state_args(plain, "marathon-defaults")["contents"]
    assert "--mesos-role" not in state_args(plain, "marathon-emulator-unit")["contents"]


@pytest.mark.parametrize(
    ("marathon", "named"),
    [
        ({"mesos_role": "*"}, 'pillar marathon:mesos_role "*" is not a Mesos role name'),
        ({"mesos_role": "a/b"}, 'pillar marathon:mesos_role "a/b" is not a Mesos role name'),
        (
            {"mesos_role": ROLE, "default_accepted_resource_roles": ["*", "spark"]},
            f'"spark" is never offered to Marathon, which is offered \'*\' and "{ROLE}"',
        ),
        (
            {"mesos_role": "", "default_accepted_resource_roles": [ROLE]},
            f"\"{ROLE}\" is never offered to Marathon, which is offered '*' only",
        ),
        (
            {"default_accepted_resource_roles": "*"},
            'default_accepted_resource_roles "*" must be a list of roles',
        ),
    ],
)
def test_bad_roles_are_refused_naming_the_value(node, marathon, named):
    with pytest.raises(RenderRefused) as refused:
        node("control1").show_sls("marathon", pillar={"marathon": marathon})
    assert named in str(refused.value), str(refused.value)
