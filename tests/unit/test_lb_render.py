"""The lb state, rendered by Salt on the host for lb1 of the shipped inventory with the local
site's pillar: Salt's own nginx file is validated before it replaces the live one."""

from __future__ import annotations

import pytest

from tests.state_render import StateRenderer, state_args

# What the master gives lb1 besides the inventory (generated secrets).
LB_PILLAR = {
    "pki": {"ca": "CA", "node": {"cert": "CERT", "key": "KEY"}},
    "consul": {"encrypt": "not-a-key", "acl": {"tokens": {"agent": "a", "lb": "b"}}},
}


@pytest.fixture(scope="module")
def lb1(tmp_path_factory) -> StateRenderer:
    return StateRenderer(tmp_path_factory.mktemp("render-lb1"), "lb1", pillar=LB_PILLAR)


def test_nginx_file_is_checked_before_it_replaces_the_live_one(lb1):
    rendered = lb1.show_sls("lb")
    config = state_args(rendered, "lb-nginx-http-config")
    assert config["name"] == "/etc/nginx/conf.d/saltyard-lb.conf"
    # Salt appends the candidate's path: nginx -t judges it in a copy of the configuration.
    assert config["check_cmd"] == (
        "/usr/local/sbin/saltyard-lb-check /etc/nginx/conf.d/saltyard-lb.conf"
    )
    requires = [dict(r) for r in config["require"]]
    assert {"file": "lb-nginx-check-script"} in requires
    assert {"file": "lb-nginx-apps-config"} in requires  # the candidate includes it
    script = state_args(rendered, "lb-nginx-check-script")
    assert script["name"] == "/usr/local/sbin/saltyard-lb-check"
    assert script["source"] == "salt://lb/files/saltyard-lb-check.sh"
    # No nginx -t after the fact: the check happened before the file changed.
    assert "lb-nginx-validate" not in rendered
    nginx = state_args(rendered, "nginx")
    assert {"file": "lb-nginx-http-config"} in [dict(w) for w in nginx["watch"]]


def test_nginx_args_reach_the_check(lb1):
    args = ["-p", "/srv/nginx", "-c", "/srv/nginx/nginx.conf"]
    rendered = lb1.show_sls(
        "lb",
        pillar={"lb": {"nginx_args": args, "paths": {"http_config": "/srv/nginx/lb.conf"}}},
    )
    assert state_args(rendered, "lb-nginx-http-config")["check_cmd"] == (
        "/usr/local/sbin/saltyard-lb-check /srv/nginx/lb.conf "
        "-p /srv/nginx -c /srv/nginx/nginx.conf"
    )
