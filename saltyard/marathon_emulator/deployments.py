"""Deployments: planning, driving each step towards the target, rolling upgrades, finishing
and cancelling, and keeping apps without a deployment at their instance count. Mixed into
``Emulator``: state and lock are the Emulator's; the scheduler tick calls ``_drive`` and
``_maintain`` under the lock.
"""

from __future__ import annotations

import copy
import uuid

from .appdef import now_version
from .model import ApiError, Deployment, Task
from .placement import rolling_step


class DeploymentsMixin:
    """Deployments and instance-count upkeep. Methods use the Emulator's attributes
    (``self.lock``, ``self.apps``, ``self.tasks``, ...); none takes a lock of its own."""

    def _new_deployment(
        self,
        app_id: str,
        steps: list[list[str]],
        original: dict | None,
        target: dict | None,
        version: str,
    ) -> Deployment:
        dep = Deployment(
            id=str(uuid.uuid4()),
            version=version,
            app_id=app_id,
            steps=steps,
            original=copy.deepcopy(original),
            target=copy.deepcopy(target),
        )
        self.deployments[dep.id] = dep
        self.backoff.pop(app_id, None)
        self.unplaced.pop(app_id, None)
        self._deployment_event("deployment_info", dep)
        return dep

    def _plan_json(self, dep: Deployment) -> dict:
        def group(app):
            return {
                "id": "/",
                "apps": [app] if app else [],
                "groups": [],
                "pods": [],
                "dependencies": [],
                "version": dep.version,
            }

        return {
            "id": dep.id,
            "version": dep.version,
            "original": group(dep.original),
            "target": group(dep.target),
            "steps": dep.to_json()["steps"],
        }

    def _deployment_event(self, event_type: str, dep: Deployment) -> None:
        fields = {"plan": self._plan_json(dep)}
        if event_type in ("deployment_success", "deployment_failed"):
            fields["id"] = dep.id
        if event_type in ("deployment_info", "deployment_step_success"):
            fields["currentStep"] = (
                dep.to_json()["steps"][dep.current_step - 1] if dep.steps else {}
            )
        self.events.publish(event_type, **fields)

    def cancel_deployment(self, deployment_id: str, force: bool) -> dict | None:
        with self.lock:
            dep = self.deployments.get(deployment_id)
            if dep is None:
                raise ApiError(404, {"message": f"DeploymentPlan {deployment_id} does not exist"})
            self._finish(dep, success=False)
            if force:
                self._save()
                return None
            # Roll back: a new deployment towards the original state.
            current = self.apps.get(dep.app_id)
            if dep.original is None:
                new = self._delete_locked(current) if current else None
            elif current is None:
                raw = {k: v for k, v in dep.original.items() if k not in ("version", "versionInfo")}
                new = self._create_locked(raw, "api", f"/v2/deployments/{deployment_id}")
            else:
                raw = {k: v for k, v in dep.original.items() if k not in ("version", "versionInfo")}
                new = self._replace_locked(current, raw, "api", f"/v2/deployments/{deployment_id}")
            self._save()
            if new is None:
                return {"deploymentId": None, "version": now_version()}
            return {"deploymentId": new.id, "version": new.version}

    def _finish(self, dep: Deployment, success: bool) -> None:
        self.deployments.pop(dep.id, None)
        if success:
            if dep.steps:
                self._deployment_event("deployment_step_success", dep)
            self._deployment_event("deployment_success", dep)
        else:
            self._deployment_event("deployment_failed", dep)
        self._save()

    def _drive(self, dep: Deployment) -> None:
        tasks = self._app_tasks(dep.app_id)
        if dep.target is None:  # StopApplication
            for t in tasks:
                self._kill(t, "app deleted")
            if not tasks:
                if dep.app_id not in self.apps:
                    self.versions.pop(dep.app_id, None)
                    self.last_failure.pop(dep.app_id, None)
                    self.events.publish("app_terminated_event", appId=dep.app_id)
                self._finish(dep, success=True)
            return
        app = self.apps.get(dep.app_id)
        if app is None:  # deleted under a forced deployment
            self._finish(dep, success=False)
            return
        if dep.steps and dep.steps[dep.current_step - 1] == ["StartApplication"]:
            self._deployment_event("deployment_step_success", dep)
            dep.current_step += 1
            self._deployment_event("deployment_info", dep)
            self._save()
        for t in tasks:
            if t.id in dep.kill_first:
                self._kill(t, "killed and scaled through the API")
        dep.kill_first &= {t.id for t in tasks if not t.killing}
        done = self._converge(app, tasks)
        if done and not dep.kill_first:
            self._finish(dep, success=True)

    def _converge(self, app: dict, tasks: list[Task]) -> bool:
        cfg = app["versionInfo"]["lastConfigChangeAt"]
        alive = [t for t in tasks if t.alive]
        killing = sum(1 for t in tasks if t.killing)
        old = [t for t in alive if t.config_version != cfg]
        new = [t for t in alive if t.config_version == cfg]
        ready_new = [t for t in new if self._is_ready(t, app)]
        strategy = app["upgradeStrategy"]
        decision = rolling_step(
            app["instances"],
            len(old),
            len(new),
            len(ready_new),
            killing,
            strategy["minimumHealthCapacity"],
            strategy["maximumOverCapacity"],
        )
        youngest_first = app.get("killSelection", "YOUNGEST_FIRST") == "YOUNGEST_FIRST"

        def kill_order(group: list[Task]) -> list[Task]:
            # Not-ready instances first, then by kill selection.
            ordered = sorted(group, key=lambda t: t.staged_at, reverse=youngest_first)
            return sorted(ordered, key=lambda t: self._is_ready(t, app))

        for t in kill_order(new)[: decision.kill_new]:
            self._kill(t, "scaled down")
        for t in kill_order(old)[: decision.kill_old]:
            self._kill(t, "replaced by a new version")
        for _ in range(decision.start_new):
            if not self._launch(app):
                break
        return (
            not old
            and killing == 0
            and decision.kill_new == 0
            and len(ready_new) == app["instances"]
            and len(new) == app["instances"]
        )

    def _maintain(self, app: dict) -> None:
        """Outside deployments: replace lost/failed instances (the launch queue)."""
        alive = [t for t in self._app_tasks(app["id"]) if t.alive]
        for _ in range(app["instances"] - len(alive)):
            if not self._launch(app):
                break
