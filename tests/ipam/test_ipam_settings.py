"""The IPAM daemon's configuration file: its defaults, where the token comes from, and the refusal
of a bad value (by the parser, and by ``python -m saltyard.ipam`` with exit status 2)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from saltyard.ipam.settings import SettingsError, load_settings, parse_settings

POOL = {"name": "tasks", "subnet": "10.20.0.0/24", "gateway": "10.20.0.1"}


def test_only_pools_are_required_and_the_defaults():
    s = parse_settings({"pools": [POOL]}, environ={})
    assert s.host == socket.gethostname()
    assert (s.plugin_name, s.socket_path) == (
        "saltyard-ipam",
        "/run/docker/plugins/saltyard-ipam.sock",
    )
    assert (s.consul_address, s.consul_token, s.key_prefix) == (
        "http://127.0.0.1:8500",
        None,
        "saltyard/ipam",
    )
    assert (s.reconcile_enabled, s.reconcile_interval, s.reconcile_grace) == (True, 30.0, 300.0)
    assert s.docker_url is None and s.pool("tasks").size == 253 and s.pool("other") is None


def test_the_socket_follows_the_plugin_name():
    s = parse_settings({"pools": [POOL], "plugin": {"name": "ipam2"}}, environ={})
    assert s.socket_path == "/run/docker/plugins/ipam2.sock"


def test_the_token_comes_from_its_file_else_the_environment(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    from_file = parse_settings(
        {"pools": [POOL], "consul": {"token_file": str(token)}}, environ={"CONSUL_HTTP_TOKEN": "e"}
    )
    assert from_file.consul_token == "s3cret"
    assert "s3cret" not in repr(from_file)
    assert parse_settings({"pools": [POOL]}, environ={"CONSUL_HTTP_TOKEN": "e"}).consul_token == "e"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"pool": []}, "unknown key(s) 'pool'"),
        ({"plugin": {"nme": "x"}}, "plugin: unknown key(s) 'nme'"),
        ({"plugin": {"name": "My Plugin"}}, "plugin.name 'My Plugin'"),
        (
            {"plugin": {"name": "a", "socket": "/run/docker/plugins/b.sock"}},
            "Docker would know it as plugin 'b', not 'a'",
        ),
        ({"plugin": {"socket": "run/x.sock"}}, "plugin.socket 'run/x.sock': expected an absolute"),
        ({"consul": {"address": "ftp://h:1"}}, "consul.address: Consul address 'ftp://h:1'"),
        ({"consul": {"token_file": "/nonexistent/t"}}, "consul.token_file '/nonexistent/t'"),
        ({"consul": {"key_prefix": "/"}}, "consul.key_prefix must not be empty"),
        ({"consul": {"timeout": "ten"}}, "consul.timeout 'ten': expected a number of seconds"),
        ({"reconcile": {"interval": 0}}, "reconcile.interval 0: must be more than 0"),
        ({"reconcile": {"grace": -1}}, "reconcile.grace -1: must be more than 0"),
        ({"reconcile": {"enabled": "yes"}}, "reconcile.enabled 'yes': expected true or false"),
        ({"reconcile": []}, "reconcile: expected an object"),
        ({"log_level": "loud"}, "log_level 'loud'"),
        ({"host": ""}, "host '': expected a non-empty string"),
        ({"pools": []}, "pools: pools []: expected a non-empty list"),
        ({"pools": [{**POOL, "gateway": "10.9.9.9"}]}, "pools: pool 'tasks': gateway 10.9.9.9"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(changes, named):
    with pytest.raises(SettingsError) as err:
        parse_settings({"pools": [POOL], **changes}, environ={})
    assert named in str(err.value)


def test_a_file_that_is_missing_or_not_json_is_named(tmp_path):
    with pytest.raises(SettingsError, match="configuration '/nonexistent/ipam.json'"):
        load_settings("/nonexistent/ipam.json")
    bad = tmp_path / "ipam.json"
    bad.write_text("{pools: ")
    with pytest.raises(SettingsError, match=f"configuration '{bad}' is not JSON"):
        load_settings(bad)


def test_the_daemon_exits_2_naming_a_bad_value_before_it_binds(tmp_path):
    config = tmp_path / "ipam.json"
    sock = tmp_path / "never.sock"
    config.write_text(
        json.dumps({"plugin": {"socket": str(sock)}, "pools": [{**POOL, "range": "10.20.1.0/26"}]})
    )
    done = subprocess.run(
        [sys.executable, "-m", "saltyard.ipam", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "range '10.20.1.0/26' is outside its subnet 10.20.0.0/24" in done.stderr
    assert not sock.exists()
