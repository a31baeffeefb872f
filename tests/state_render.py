"""Render this repository's states with Salt itself, on the host, for one node of an inventory.

A masterless Salt (``file_client: local``) in this process serves ``states/`` and a pillar made
the way the master makes it: the inventory ext_pillar's output for the node
(``_pillar/saltyard_inventory.py``), then a site's pillar (``pillar/sites/<site>.sls``), then the
test's own overrides. ``state.show_sls`` renders an SLS (Jinja, map.jinja, the render-time
refusals) without applying anything, which is how the bad-input checks are tested without a node.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class RenderRefused(Exception):
    """The SLS did not render; the message is Salt's (it carries the state's own error)."""


def _inventory_pillar(inventory_path: Path, minion: str) -> dict:
    spec = importlib.util.spec_from_file_location(
        "saltyard_test_render_inventory_pillar", REPO / "_pillar" / "saltyard_inventory.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ext_pillar(minion, {}, str(inventory_path))


class StateRenderer:
    def __init__(
        self,
        workdir: Path,
        minion: str,
        inventory_path: Path = REPO / "salt" / "inventory.yaml",
        site: str = "local",
        pillar: dict | None = None,
        grains: dict | None = None,
    ) -> None:
        import salt.config

        workdir = Path(workdir)
        pillar_dir = workdir / "pillar"
        pillar_dir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: Salt's default renderer reads these files as they are.
        (pillar_dir / "inventory.sls").write_text(
            json.dumps(_inventory_pillar(inventory_path, minion))
        )
        (pillar_dir / "site.sls").write_text(
            (REPO / "pillar" / "sites" / f"{site}.sls").read_text()
        )
        # The daemons' interpreter is this one here: the states ask it what saltyard code it
        # imports (_modules/saltyard_runtime.py), and /opt/saltyard/venv is a node's.
        host = {"discovery": {"python": sys.executable}}
        host["marathon"] = {"emulator": {"python": sys.executable}}
        (pillar_dir / "host.sls").write_text(json.dumps(host))
        (pillar_dir / "test.sls").write_text(json.dumps(pillar or {}))
        (pillar_dir / "top.sls").write_text("base:\n  '*': [inventory, site, host, test]\n")
        opts = salt.config.minion_config(None)
        opts.update(
            file_client="local",
            id=minion,
            root_dir=str(workdir / "root"),
            cachedir=str(workdir / "cache"),
            pki_dir=str(workdir / "pki"),
            # As the master serves them (saltyard/bootstrap/deploy.py): states/, then the repo
            # root (salt/consul/policies/, _modules/, ...).
            file_roots={"base": [str(REPO / "states"), str(REPO)]},
            # The project's execution modules, which templates call (registry.vip_problem).
            module_dirs=[str(REPO / "_modules")],
            pillar_roots={"base": [str(pillar_dir)]},
            log_level="quiet",
        )
        self.opts = opts
        self.grains = grains or {}

    def show_sls(self, sls: str, pillar: dict | None = None) -> dict[str, Any]:
        """The rendered states of ``sls`` (``pillar`` merged over the rest), or RenderRefused."""
        import salt.client

        # A new minion each time: in one process, Salt renders with the minion made last (its
        # loader context is global), so two renderers must never share one.
        caller = salt.client.Caller(mopts=copy.deepcopy(self.opts))
        caller.sminion.opts["grains"].update(self.grains)
        result = caller.cmd("state.show_sls", sls, pillar=pillar or {})
        if isinstance(result, list):
            raise RenderRefused("\n".join(str(r) for r in result))
        return result


def state_args(rendered: dict, state_id: str) -> dict[str, Any]:
    """The arguments of one state in a show_sls result, as one mapping (plus ``fun``)."""
    (module,) = [k for k in rendered[state_id] if not k.startswith("__")]
    args: dict[str, Any] = {}
    for item in rendered[state_id][module]:
        if isinstance(item, dict):
            args.update(item)
        else:
            args["fun"] = f"{module}.{item}"
    return args
