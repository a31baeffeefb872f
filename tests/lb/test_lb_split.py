"""The gray release's traffic split on the host lb stack (real emulator, bridge, Consul,
consul-template and nginx, with the files states/lb ships): a stable and a canary app of one
service, the canary's share in Consul KV, and the release log that the gate reads.

What a release relies on:
- with no share (or 0) the canary gets nothing, though its instances are healthy and listed;
- a share sends about that share of the requests to the canary, whatever the instance counts;
- every proxied request is in the release log with its app, env and group, and
  saltyard.release.traffic counts them per group as the client saw them;
- setting the share back to 0 stops the canary's traffic within a couple of seconds.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import requests

from saltyard.release import traffic
from tests.lb import lbstack
from tests.support.wait import wait_until as support_wait_until

wait_until = functools.partial(support_wait_until, ignore=(requests.RequestException,))

SERVICE = "split-web"
ENV = "prod"
SHARE_KEY = f"saltyard/release/{SERVICE}/{ENV}/canary-share"


def set_share(stack, value: str | None) -> None:
    kv = stack.consul.admin().kv
    if value is None:
        kv.delete(SHARE_KEY)
    else:
        kv.put(SHARE_KEY, value)


def deploy(apps, stack) -> tuple[set[str], set[str]]:
    """3 stable and 1 canary instance of one service; their task ids."""
    labels = {"saltyard.service": SERVICE}
    apps(f"/{ENV}/split-web", 3, env=ENV, labels=dict(labels))
    apps(
        f"/{ENV}/split-web-canary",
        1,
        env=ENV,
        labels={**labels, "saltyard.track": "canary"},
    )
    helpers = stack.helpers

    def addresses(app_id: str) -> set[str]:
        return {
            f"127.0.0.1:{task['ports'][0]}"
            for task in helpers.healthy_tasks(stack.marathon, app_id).values()
        }

    # The live file must list these apps' own tasks: the previous test's apps had the same ids,
    # and their deletion may not have reached nginx yet (a count alone matched the old tasks,
    # and the service then vanished from nginx for a moment: a 404 in CI).
    wait_until(
        lambda: (stable := addresses(f"/{ENV}/split-web"))
        and len(stable) == 3
        and set(stack.nginx.upstream_servers(SERVICE, ENV, "stable")) == stable
        and set(stack.nginx.upstream_servers(SERVICE, ENV, "canary"))
        == addresses(f"/{ENV}/split-web-canary")
        and len(stack.nginx.upstream_servers(SERVICE, ENV, "canary")) == 1
        and stack.nginx.settled(),
        90,
        message="3 stable and 1 canary instance of these apps in the live file",
    )
    stable = set(helpers.healthy_tasks(stack.marathon, f"/{ENV}/split-web"))
    canary = set(helpers.healthy_tasks(stack.marathon, f"/{ENV}/split-web-canary"))
    return stable, canary


def served(stack) -> dict:
    """What release_traffic.share reports on this lb: the share its nginx serves."""
    return traffic.served_share(Path(stack.nginx.lb["paths"]["live"]), SERVICE, ENV)


def who_answers(stack, count: int) -> list[str]:
    host = stack.host(SERVICE, ENV)
    answers = []
    for _ in range(count):
        response = stack.nginx.get(host, "/id")
        assert response.status_code == 200, (response.status_code, response.text)
        answers.append(response.text)
    return answers


def test_the_canary_gets_its_share_and_the_log_counts_it(stack, apps):
    set_share(stack, None)
    stable, canary = deploy(apps, stack)

    # No share: the canary is listed but gets nothing.
    assert served(stack)["share"] == 0
    assert not set(who_answers(stack, 60)) & canary

    set_share(stack, "25")
    # The release workflow's wait: the marker says 25 once the apply script has reloaded nginx.
    wait_until(
        lambda: served(stack)["share"] == 25 and served(stack)["applied"],
        30,
        message="the 25 % split served",
    )
    assert "25% canary;" in stack.nginx.live()
    time.sleep(0.5)  # an old worker may still finish a connection with the previous file
    start = time.time()
    answers = who_answers(stack, 800)
    end = time.time() + 0.001
    to_canary = sum(a in canary for a in answers)
    assert all(a in stable | canary for a in answers)
    # 800 draws at p=0.25 (mean 200, sd 12.2): outside 130..270 is below 1e-8.
    assert 130 <= to_canary <= 270, to_canary

    # The release log saw the same split (lines are written when a request ends: wait for
    # the last one).
    def counted():
        figures = traffic.window(stack.nginx.release_log(), SERVICE, ENV, start, end)
        return figures if figures["canary"].requests + figures["stable"].requests == 800 else None

    figures = wait_until(counted, 10, message="800 requests in the release log")
    assert figures["canary"].requests == to_canary
    assert figures["stable"].requests == 800 - to_canary
    assert figures["canary"].errors_5xx == figures["stable"].errors_5xx == 0
    assert sum(figures["canary"].latency.values()) == to_canary

    # Back to 0: the canary's traffic stops within a couple of seconds (the rollback path).
    set_share(stack, "0")
    changed = time.monotonic()
    # What the release workflow waits for (share 0, applied), and nginx really serving it.
    wait_until(
        lambda: served(stack)["share"] == 0
        and served(stack)["applied"]
        and "% canary;" not in stack.nginx.live()
        and stack.nginx.settled(),
        10,
        message="the split gone from the live file and nginx serving it",
    )
    took = time.monotonic() - changed
    assert took <= 2.0, f"share 0 took {took:.2f} s to reach nginx"
    time.sleep(0.5)
    assert not set(who_answers(stack, 60)) & canary


def test_a_malformed_share_sends_nothing_to_the_canary_and_100_sends_all(stack, apps):
    stable, canary = deploy(apps, stack)
    for bad in ("abc", "-5", "250", "5%", "1e2"):
        set_share(stack, bad)
        # The render happens, and it splits nothing.
        wait_until(
            lambda: stack.nginx.settled() and "% canary;" not in stack.nginx.live(),
            10,
            message=f"no split for share {bad!r}",
        )
        assert not set(who_answers(stack, 20)) & canary, bad
        assert served(stack)["share"] == 0, bad

    set_share(stack, "100")
    wait_until(
        lambda: "set $saltyard_group canary;" in stack.nginx.live() and stack.nginx.settled(),
        30,
        message="everything to the canary",
    )
    assert served(stack)["share"] == 100
    time.sleep(0.5)
    assert set(who_answers(stack, 20)) <= canary
    set_share(stack, None)


def test_only_a_canary_is_served_by_it(stack, apps):
    """A service whose only instances are canaries (its stable app scaled to 0, or a first
    release) is still served."""
    apps(
        "/prod/lonely-canary",
        1,
        env=ENV,
        labels={"saltyard.service": "lonely", "saltyard.track": "canary"},
    )
    wait_until(
        lambda: stack.nginx.get(stack.host("lonely", ENV), "/id").status_code == 200,
        60,
        message="the canary-only service served",
    )
    assert lbstack.upstream_servers(stack.nginx.live(), f"lonely.{ENV}.stable") == []
