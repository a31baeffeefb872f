"""Pinned versions of outside tools, read from where the project pins them (never repeated here).

consul-template: ``lb:consul_template:version`` in states/lb/defaults.yaml is the one pin. The
Salt state installs that version unless a site's pillar names another,
scripts/build-consul-template.sh builds it (``--print-version`` shows what it read), and the lb
tests run the binary it builds.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LB_DEFAULTS = REPO / "states" / "lb" / "defaults.yaml"
CACHE = Path(os.environ.get("SALTYARD_CACHE", "/var/cache/saltyard"))


def consul_template_version() -> str:
    return str(yaml.safe_load(LB_DEFAULTS.read_text())["lb"]["consul_template"]["version"])


def consul_template_binary() -> Path:
    """Where scripts/build-consul-template.sh leaves the binary ($SALTYARD_CONSUL_TEMPLATE
    overrides)."""
    override = os.environ.get("SALTYARD_CONSUL_TEMPLATE")
    if override:
        return Path(override)
    return CACHE / "consul-template" / f"v{consul_template_version()}" / "consul-template"
