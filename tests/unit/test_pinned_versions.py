"""consul-template is pinned once, in states/lb/defaults.yaml (lb:consul_template:version): the
build script reads it, the lb tests run that build, and every shipped site pillar that names a
version or an archive names that one."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.support import versions

REPO = versions.REPO
SCRIPT = REPO / "scripts" / "build-consul-template.sh"


def test_the_build_script_reads_the_pin():
    env = {k: v for k, v in os.environ.items() if k != "CONSUL_TEMPLATE_VERSION"}
    proc = subprocess.run(
        [str(SCRIPT), "--print-version"], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == versions.consul_template_version()


def test_the_build_script_refuses_a_version_that_is_not_x_y_z():
    env = {**os.environ, "CONSUL_TEMPLATE_VERSION": "latest"}
    proc = subprocess.run(
        [str(SCRIPT), "--print-version"], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 1
    assert "got 'latest'" in proc.stderr


def test_the_lb_tests_run_the_pinned_build(monkeypatch):
    monkeypatch.delenv("SALTYARD_CONSUL_TEMPLATE", raising=False)
    binary = versions.consul_template_binary()
    assert binary.parent.name == f"v{versions.consul_template_version()}"
    assert binary.name == "consul-template"


@pytest.mark.parametrize("site", ["local", "example-prod"])
def test_site_pillars_name_the_pinned_version(site):
    version = versions.consul_template_version()
    pillar = yaml.safe_load((REPO / "pillar" / "sites" / f"{site}.sls").read_text())
    ct = pillar["lb"]["consul_template"]
    assert str(ct.get("version", version)) == version, (site, ct)
    # The archive's path carries the version twice (directory and file name).
    assert ct["source"].count(version) == 2, (site, ct["source"])
