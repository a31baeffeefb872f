"""saltyard.clients.consul without a server: what it refuses, whose token it sends, and the
consul_acl module's answer when the package is missing."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

import saltyard.clients
from saltyard.clients.consul import ConsulClient, ConsulUnavailable, parse_address

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8500", ("http", "127.0.0.1", 8500)),
        ("consul.service", ("http", "consul.service", 8500)),
        ("https://consul.example:8501", ("https", "consul.example", 8501)),
        ("https://consul.example", ("https", "consul.example", 443)),
    ],
)
def test_addresses_with_or_without_scheme(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["ftp://h:1", "h:port", "http://h:8500/v1", ""])
def test_a_bad_address_is_refused_by_name(address):
    with pytest.raises(ValueError, match="Consul address"):
        ConsulClient(address)
    with pytest.raises(ValueError) as err:
        parse_address(address)
    assert repr(address) in str(err.value)


def test_the_callers_token_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    assert ConsulClient("127.0.0.1:8500", "mine").api.token == "mine"
    assert ConsulClient("127.0.0.1:8500").api.token is None


def test_no_answer_is_reported_as_unavailable_with_the_address():
    with socket.socket() as s:  # a loopback port nothing listens on: bound, then closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ConsulClient(f"127.0.0.1:{port}", timeout=2)
    where = f"no answer from Consul at http://127.0.0.1:{port}"
    with pytest.raises(ConsulUnavailable, match=where):
        client.leader()


def test_consul_acl_says_why_it_is_not_loaded_without_the_package(monkeypatch):
    # As if saltyard (or py-consul) were not installed: the import fails.
    monkeypatch.setitem(sys.modules, "saltyard.clients.consul", None)
    monkeypatch.delattr(saltyard.clients, "consul", raising=False)
    path = REPO / "_modules" / "consul_acl.py"
    spec = importlib.util.spec_from_file_location("consul_acl_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded, reason = module.__virtual__()
    assert loaded is False
    assert "saltyard.clients.consul" in reason and "not importable" in reason
