"""Running the release workflow in the local cluster, for tests/convergence/test_release.py and
benchmarks/release.py: orch.release on the master, the release record, new commits of the
example app on the master's git server, and the release's Salt events."""

from __future__ import annotations

import json
import time
import uuid

APP = "hello"


def release_pillar(version: str, ref: str = "main", *, plan: dict | None = None, **extra) -> dict:
    """orch.release's pillar: the app, ref and version, and ``plan`` over the app's release
    data (pillar/release/hello.sls), as an operator's run may override it."""
    return {
        "app": APP,
        "ref": ref,
        "version": version,
        "release": {"apps": {APP: plan or {}}},
        **extra,
    }


def orchestrate(cluster, pillar: dict, *extra: str) -> tuple[int, dict]:
    """`salt-run state.orchestrate orch.release` on the master: its exit code and the one
    step's result (or the render error's text under "error"). The JSON goes to a file: Salt's
    warnings and asyncio's noise at exit go to the terminal and may carry braces."""
    master = cluster.inventory.master.name
    path = f"/tmp/orch-release-{uuid.uuid4().hex}.json"
    code, out = cluster.exec(
        master,
        ["salt-run", "--out=json", f"--out-file={path}", "state.orchestrate", "orch.release"]
        + [f"pillar={json.dumps(pillar)}", *extra],
        check=False,
    )
    _, text = cluster.exec(master, ["sh", "-c", f"cat {path}; rm -f {path}"], check=False)
    try:
        result = json.loads(text)
    except ValueError:
        return code, {"error": out + text}
    data = result.get("data", result) if isinstance(result, dict) else result
    (steps,) = data.values() if isinstance(data, dict) and len(data) == 1 else (data,)
    if not isinstance(steps, dict) or not all(isinstance(v, dict) for v in steps.values()):
        return code, {"error": json.dumps(steps)}
    (step,) = steps.values()
    return code, step


def runner_return(step: dict) -> dict:
    return (step.get("changes") or {}).get("return") or {}


def status(cluster) -> dict:
    """`salt-run saltyard_release.status` (the output may carry Salt's warnings around the
    JSON)."""
    _, out = cluster.exec(
        cluster.inventory.master.name,
        ["salt-run", "--out=json", "saltyard_release.status", APP],
    )
    found, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    return found


def commit(cluster, version: str, **faults) -> str:
    """A new commit of the example app on the master's git server: release.json's version and
    faults (none unless given); returns its sha."""
    # Faults not given are off: a commit after a bad one must not inherit its faults.
    change = json.dumps({"version": version, "error_share": 0, "delay_ms": 0, **faults})
    script = (
        "set -e; d=$(mktemp -d); trap 'rm -rf $d' EXIT; "
        "git clone -q /srv/git/hello.git $d; cd $d; "
        f'python3 -c \'import json,sys; p="release.json"; d=json.load(open(p)); '
        f'd.update(json.loads(sys.argv[1])); json.dump(d, open(p, "w"), indent=2)\' '
        f"'{change}'; "
        f"git -c user.name=tests -c user.email=tests@saltyard commit -qam 'hello {version}'; "
        "git push -q origin HEAD:main; git rev-parse HEAD"
    )
    _, out = cluster.exec(
        cluster.inventory.master.name, ["runuser", "-u", "git", "--", "sh", "-c", script]
    )
    return out.strip().splitlines()[-1]


class Events:
    """`salt-run state.event` on the master, for the release's tags (or ``pattern``'s), while
    a test runs."""

    def __init__(self, cluster, name: str, pattern: str = f"saltyard/release/{APP}/*"):
        self.cluster = cluster
        self.pattern = pattern
        self.path = f"/tmp/release-events-{name}.txt"
        master = cluster.inventory.master.name
        cluster.exec(master, ["rm", "-f", self.path])
        cluster.exec(
            master,
            [
                "sh",
                "-c",
                f"nohup timeout 900 salt-run state.event '{pattern}' > {self.path} 2>&1 &",
            ],
        )
        time.sleep(3)  # the listener connects to the event bus

    def tags(self) -> list[str]:
        _, out = self.cluster.exec(self.cluster.inventory.master.name, ["cat", self.path])
        return [line.split("\t")[0] for line in out.splitlines() if line.startswith("saltyard/")]

    def stop(self) -> None:
        self.cluster.exec(
            self.cluster.inventory.master.name,
            ["pkill", "-f", f"state.event {self.pattern}"],
            check=False,
        )
