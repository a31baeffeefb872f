"""The Marathon apps of a release: one definition per environment and track, from the app's
release data (saltyard/release/plan.py).

- ``/<env>/<app>`` is the stable app of an environment; ``/<env>/<app>-canary`` the canary of a
  gray release in production. Both carry the bridge's labels (docs/bridge.md): the service name
  is the app's for both, so they share ``<app>.<env>.<domain>``, and ``saltyard.track`` tells
  the lb which upstream each instance belongs to (docs/lb.md).
- Docker's bridge network: the app listens on its container port (``CONTAINER_PORT``; Marathon's
  own ``PORT``/``PORT0`` are the host port in this mode, and it sets them) and Docker maps it
  to a host port that Marathon picks; the bridge registers the host port.
- The constraint ``env CLUSTER <env>`` pins the tasks to that environment's agents.
- The stable app upgrades without going below its full healthy capacity
  (``minimumHealthCapacity`` 1: a new task must be healthy before an old one is killed).
- ``taskKillGracePeriodSeconds`` leaves a killed task time to drain (docs/lb.md).

Every definition made here passes the project's own Marathon rules
(``saltyard.marathon_appdef.validate_app``), which the unit tests check.
"""

from __future__ import annotations

from saltyard.release.plan import AppRelease

STABLE, CANARY = "stable", "canary"
KILL_GRACE_SECONDS = 15


def app_id(app: str, env: str, track: str = STABLE) -> str:
    if track not in (STABLE, CANARY):
        raise ValueError(f"track {track!r} is not {STABLE!r} or {CANARY!r}")
    return f"/{env}/{app}" + ("-canary" if track == CANARY else "")


def definition(
    plan: AppRelease,
    env: str,
    image: str,
    version: str,
    *,
    track: str = STABLE,
    instances: int | None = None,
) -> dict:
    """The Marathon app running ``image`` (``<registry>/<repository>:<tag>``) as ``version`` of
    ``plan`` in ``env``. ``instances`` defaults to the plan's count for the environment."""
    if env not in plan.instances:
        raise ValueError(
            f"app {plan.name} has no instance count for environment {env!r} "
            f"(release:apps:{plan.name}:instances has {sorted(plan.instances)})"
        )
    count = plan.instances[env] if instances is None else instances
    return {
        "id": app_id(plan.name, env, track),
        "instances": count,
        "cpus": plan.cpus,
        "mem": plan.mem,
        "env": {"CONTAINER_PORT": str(plan.port)},
        "container": {
            "type": "DOCKER",
            "docker": {"image": image, "network": "BRIDGE"},
            "portMappings": [{"containerPort": plan.port, "hostPort": 0, "protocol": "tcp"}],
        },
        "constraints": [["env", "CLUSTER", env]],
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": plan.health_path,
                "portIndex": 0,
                "gracePeriodSeconds": 60,
                "intervalSeconds": 5,
                "timeoutSeconds": 3,
                "maxConsecutiveFailures": 3,
            }
        ],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
        "taskKillGracePeriodSeconds": KILL_GRACE_SECONDS,
        "labels": {
            "saltyard.service": plan.name,
            "saltyard.env": env,
            "saltyard.version": version,
            "saltyard.track": track,
        },
    }
