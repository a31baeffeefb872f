"""Shared by the convergence tests."""

from __future__ import annotations

import os

import testinfra

PROFILE = os.environ.get("SALTYARD_TEST_PROFILE", "full")


def host(node: str):
    """A testinfra host for a node container of the local cluster."""
    return testinfra.get_host(f"docker://saltyard-{node}")
