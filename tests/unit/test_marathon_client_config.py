"""How saltyard's Salt modules (marathon_api, and mesos.drain) configure the Marathon client from
Salt's config.get: ``saltyard.clients.marathon.client_from_config``."""

from __future__ import annotations

import pytest

from saltyard.clients.marathon import client_from_config


def getter(config: dict):
    return lambda key, default=None: config.get(key, default)


def test_credentials_in_the_url_move_into_the_session():
    # Out of the URL, so that they never show in an error message (errors carry the URL).
    client = client_from_config(getter({"marathon:url": "http://ops:s%40cret@10.0.0.5:8080"}))
    assert client.base_url == "http://10.0.0.5:8080"
    assert client.session.auth == ("ops", "s@cret")


def test_explicit_username_wins_and_verify_is_passed():
    config = {
        "marathon:url": "https://a:b@m:8443",
        "marathon:username": "c",
        "marathon:password": "d",
        "marathon:verify": "/etc/ca.pem",
    }
    client = client_from_config(getter(config))
    assert client.session.auth == ("c", "d") and client.session.verify == "/etc/ca.pem"


def test_defaults_to_the_inventorys_marathon_node_with_the_roles_credentials():
    config = {
        "saltyard:members:marathon": [{"name": "control1", "address": "172.30.0.11"}],
        "marathon:http_port": 8081,
        "marathon:http_credentials": {"user": "marathon", "password": "pw"},
    }
    client = client_from_config(getter(config))
    assert client.base_url == "http://172.30.0.11:8081"
    assert client.session.auth == ("marathon", "pw")
    # An explicit url= wins over the configuration.
    assert client_from_config(getter(config), "http://other:1").base_url == "http://other:1"


def test_no_url_at_all_is_an_error_that_says_what_to_set():
    with pytest.raises(ValueError, match="set marathon:url"):
        client_from_config(getter({}))
