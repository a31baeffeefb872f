"""The registry state's htpasswd users, rendered by Salt on the host for registry1 of the shipped
inventory: the bcrypt cost they are hashed with, the commands run against the real htpasswd
(apache2-utils), and the costs refused at render time."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.state_render import RenderRefused, state_args


def _user_state(rendered: dict) -> dict:
    return state_args(rendered, "registry-user-pull")


def test_users_are_hashed_with_the_default_cost_4(registry1):
    user = _user_state(registry1.show_sls("registry"))
    assert "htpasswd -i -B -C 4 /etc/docker/registry/htpasswd pull" in user["name"]
    assert "'^pull:[$]2y[$]04[$]'" in user["unless"]
    # The password is in the environment, not on a command line.
    assert "not-a-password" not in user["name"] + user["unless"]
    assert user["env"]["REGISTRY_PASSWORD"] == "not-a-password"


def _sh(command: str, env: dict) -> int:
    return subprocess.run(["sh", "-c", command], env={**os.environ, **env}, check=False).returncode


def test_the_hash_is_made_again_only_when_the_password_or_the_cost_changes(registry1, tmp_path):
    """The rendered `name` and `unless` commands, run by sh against the real htpasswd."""

    def user_state(cost: int, password: str) -> dict:
        registry = {
            "config_dir": str(tmp_path),
            "htpasswd_cost": cost,
            "users": {"pull": password},
        }
        return _user_state(registry1.show_sls("registry", pillar={"registry": registry}))

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")

    def converge(state: dict) -> bool:
        """Run the state's command unless its check passes; True when it ran."""
        if _sh(state["unless"], state["env"]) == 0:
            return False
        assert _sh(state["name"], state["env"]) == 0
        assert _sh(state["unless"], state["env"]) == 0  # converged now
        return True

    first = user_state(4, "first-password")
    assert converge(first) is True
    assert htpasswd.read_text().startswith("pull:$2y$04$")
    assert converge(first) is False  # second run: no change
    assert converge(user_state(4, "other-password")) is True
    assert converge(user_state(6, "other-password")) is True
    assert htpasswd.read_text().startswith("pull:$2y$06$")
    assert converge(user_state(6, "other-password")) is False
    assert len(htpasswd.read_text().splitlines()) == 1


@pytest.mark.parametrize("cost", [3, 18, "5", True, 4.5, None])
def test_a_bad_cost_is_refused_by_name(registry1, cost):
    with pytest.raises(RenderRefused) as refused:
        registry1.show_sls("registry", pillar={"registry": {"htpasswd_cost": cost}})
    shown = {True: "true", None: "null"}.get(cost, f'"{cost}"' if isinstance(cost, str) else cost)
    assert f"pillar registry:htpasswd_cost is {shown}: bcrypt's cost is a whole number" in str(
        refused.value
    )
