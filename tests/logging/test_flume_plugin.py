"""saltyard's Flume plugin (flume/) with the real Apache Flume, as scripts/build-flume.sh
assembles it: the log node's pipeline (TAILDIR over the spool files, regex_extractor, file
channel, GroupedFileSink) delivers every spool line once into <env>/<app>/<day>.log, loses none
when the JVM is SIGKILLed mid-way, and keeps header values from leaving its directory; CheckConfig
refuses the configurations Flume would quietly drop a component of."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from tests.processes import stop_process
from tests.support.components import require, require_program
from tests.support.wait import free_port, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-flume.sh"
AGENT = "log1"
HEADERS = ("time", "env", "app", "host", "task")


def pipeline_config(tmp: Path, sink: str | None = None) -> str:
    """The log node's agent (what the logging state renders), rooted in ``tmp``. In a properties
    file a backslash is an escape (a lone ``\\.`` loses its backslash), so the regexes double it."""
    sink = sink or (
        f"{AGENT}.sinks.out.type = io.saltyard.flume.GroupedFileSink\n"
        f"{AGENT}.sinks.out.directory = {tmp}/out\n"
        f"{AGENT}.sinks.out.batchSize = 1000\n"
    )
    serializers = "".join(
        f"{AGENT}.sources.spool.interceptors.fields.serializers.s{i}.name = {name}\n"
        for i, name in enumerate(HEADERS)
    )
    return (
        f"{AGENT}.sources = spool\n"
        f"{AGENT}.channels = durable\n"
        f"{AGENT}.sinks = out\n"
        "\n"
        f"{AGENT}.sources.spool.type = TAILDIR\n"
        f"{AGENT}.sources.spool.channels = durable\n"
        f"{AGENT}.sources.spool.positionFile = {tmp}/state/taildir-positions.json\n"
        f"{AGENT}.sources.spool.filegroups = apps\n"
        f"{AGENT}.sources.spool.filegroups.apps = {tmp}/spool/apps-.*\\\\.log\n"
        f"{AGENT}.sources.spool.batchSize = 1000\n"
        f"{AGENT}.sources.spool.interceptors = fields\n"
        f"{AGENT}.sources.spool.interceptors.fields.type = regex_extractor\n"
        f"{AGENT}.sources.spool.interceptors.fields.regex = "
        "^(\\\\S+) (\\\\S+) (\\\\S+) (\\\\S+) (\\\\S+)\n"
        f"{AGENT}.sources.spool.interceptors.fields.serializers = s0 s1 s2 s3 s4\n"
        f"{serializers}"
        "\n"
        f"{AGENT}.channels.durable.type = file\n"
        f"{AGENT}.channels.durable.checkpointDir = {tmp}/state/checkpoint\n"
        f"{AGENT}.channels.durable.dataDirs = {tmp}/state/data\n"
        f"{AGENT}.channels.durable.capacity = 1000000\n"
        f"{AGENT}.channels.durable.transactionCapacity = 10000\n"
        # The floor Flume allows (1 MB): the default 500 MB would refuse puts on a small tmpfs.
        f"{AGENT}.channels.durable.minimumRequiredSpace = 1048576\n"
        "\n"
        f"{AGENT}.sinks.out.channel = durable\n"
        f"{sink}"
    )


@pytest.fixture(scope="session")
def java() -> str:
    return require_program("java", "openjdk-17-jdk-headless")


@pytest.fixture(scope="session")
def flume_lib(java) -> Path:
    """Flume's jars and the plugin, from scripts/build-flume.sh (a no-op once built)."""
    built = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=900, cwd=REPO)
    if built.returncode != 0:
        if "no mvn in PATH" in built.stderr:
            require("maven", "mvn is not installed (maven); run scripts/host-setup.sh")
        pytest.fail(f"scripts/build-flume.sh failed:\n{built.stderr[-4000:]}", pytrace=False)
    lib = subprocess.run(
        [str(BUILD), "--print-lib"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    return Path(lib)


class FlumeAgent:
    """A Flume agent (org.apache.flume.node.Application) of ``config`` in ``tmp``, with its HTTP
    JSON counters on a free port."""

    def __init__(self, java: str, lib: Path, tmp: Path, config: str):
        self.java, self.lib, self.tmp = java, lib, tmp
        self.conf = tmp / "flume.conf"
        self.conf.write_text(config)
        self.log = tmp / "agent.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> FlumeAgent:
        self.port = free_port()
        cmd = [
            self.java,
            "-Xmx256m",
            "-Dflume.monitoring.type=http",
            f"-Dflume.monitoring.port={self.port}",
            "-cp",
            f"{self.lib}/*",
            "org.apache.flume.node.Application",
            "--no-reload-conf",
            "-n",
            AGENT,
            "-f",
            str(self.conf),
        ]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(lambda: "SINK.out" in self.metrics(), 30, message="Flume's sink running")
        return self

    def metrics(self) -> dict:
        if self.proc.poll() is not None:
            raise AssertionError(f"Flume exited ({self.proc.returncode}): {tail(self.log)}")
        try:
            with urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                return json.load(response)
        except (URLError, OSError, ValueError):
            return {}

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no last checkpoint, what a crash looks like."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> bool:
        """SIGTERM; True when Flume ran its shutdown and exited by itself (the JVM's status for
        SIGTERM is 143) rather than being killed after the grace time."""
        return stop_process(self.proc, grace=20) in (0, 143)


@pytest.fixture
def agent(java, flume_lib, tmp_path):
    """Starts agents of the pipeline in tmp_path; stops them all at the end."""
    started: list[FlumeAgent] = []
    (tmp_path / "spool").mkdir()

    def start(config: str | None = None) -> FlumeAgent:
        flume = FlumeAgent(java, flume_lib, tmp_path, config or pipeline_config(tmp_path))
        started.append(flume)
        return flume.start()

    yield start
    for flume in started:
        if flume.proc and flume.proc.poll() is None:
            stop_process(flume.proc, grace=5, sig=signal.SIGKILL)


ENVS_APPS = [("prod", "hello"), ("fat", "hello"), ("prod", "web"), ("fat", "web")]
DAYS = ["2026-12-06", "2026-12-07"]


def spool_line(n: int) -> tuple[str, str]:
    """Line number n of the spool (the format of the log node's rsyslog) and the file under the
    output directory it belongs in."""
    env, app = ENVS_APPS[n % len(ENVS_APPS)]
    day = DAYS[n // 1000 % len(DAYS)]
    line = (
        f"{day}T05:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000000:06d}+00:00 {env} {app} "
        f"agent-{env} {env}_{app}.0b1f2c3d hello world {n}"
    )
    return line, f"{env}/{app}/{day}.log"


def write_lines(path: Path, numbers) -> None:
    with open(path, "a") as spool:
        spool.write("".join(spool_line(n)[0] + "\n" for n in numbers))


def delivered(out: Path) -> list[tuple[str, str]]:
    """(file relative to out, line) for every line in every file under out."""
    found = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        found += [(rel, line) for line in path.read_text().split("\n")[:-1]]
    return found


def line_count(out: Path) -> int:
    if not out.exists():
        return 0
    return sum(p.read_bytes().count(b"\n") for p in out.rglob("*.log"))


def check_delivery(out: Path, numbers) -> Counter:
    """Every line is one of the spool's, whole and in its file; returns how often each arrived."""
    expected = {n: spool_line(n) for n in numbers}
    seen: Counter = Counter()
    for rel, line in delivered(out):
        n = int(line.rsplit(" ", 1)[-1])
        assert n in expected, f"{rel}: a line that was never written: {line!r}"
        assert (line, rel) == expected[n], f"line {n} arrived as {line!r} in {rel}"
        seen[n] += 1
    return seen


def test_pipeline_delivers_every_line_once_into_its_file(agent, tmp_path):
    spool, out = tmp_path / "spool", tmp_path / "out"
    total = 4000
    # Two spool files, one before the agent starts and one while it runs (followed, not only
    # read); a third name that the filegroup's regex must not take (it is "\." there, not ".").
    write_lines(spool / "apps-1.log", range(0, total // 2))
    (spool / "apps-2_log").write_text(spool_line(total)[0] + "\n")
    # What a crash in the middle of a write leaves: a half line, never committed (its event is
    # still in the channel). The sink cuts it when it opens the file.
    half = out / "prod" / "hello" / "2026-12-06.log"
    half.parent.mkdir(parents=True)
    half.write_text(spool_line(total)[0][:50])
    # Four files open at most: the days alternate every 1000 lines, so files are closed (the
    # least recently used) and opened again on the way.
    flume = agent(
        pipeline_config(
            tmp_path,
            sink=(
                f"{AGENT}.sinks.out.type = io.saltyard.flume.GroupedFileSink\n"
                f"{AGENT}.sinks.out.directory = {tmp_path}/out\n"
                f"{AGENT}.sinks.out.maxOpenFiles = 4\n"
            ),
        )
    )
    write_lines(spool / "apps-2.log", range(total // 2, total - 1))
    wait_until(lambda: line_count(out) >= total - 1, 30, message=f"{total - 1} lines delivered")

    # A line without its newline yet (a writer mid-line) is held back, not cut in two.
    last, _ = spool_line(total - 1)
    with open(spool / "apps-2.log", "a") as f:
        f.write(last[:40])
    time.sleep(2)
    assert line_count(out) == total - 1
    with open(spool / "apps-2.log", "a") as f:
        f.write(last[40:] + "\n")
    wait_until(lambda: line_count(out) >= total, 15, message="the completed line delivered")

    # The sink writes (and fsyncs) a batch, commits it, and only then counts it: the last line
    # can be in its file a moment before the counter moves.
    def drained() -> dict:
        counters = flume.metrics().get("SINK.out", {})
        return counters if int(counters.get("EventDrainSuccessCount", 0)) >= total else {}

    counters = wait_until(drained, 10, message=f"the sink counting {total} events")
    assert flume.stop(), tail(flume.log)
    seen = check_delivery(out, range(total))
    assert sorted(seen) == list(range(total)), "lines missing"
    assert max(seen.values()) == 1, {n: c for n, c in seen.items() if c > 1}
    assert len(list(out.rglob("*.log"))) == len(ENVS_APPS) * len(DAYS)
    assert "ended in a partial line (50 bytes); cut off" in flume.log.read_text()
    assert int(counters["EventDrainSuccessCount"]) == total
    assert int(counters["EventWriteFail"]) == 0
    assert int(counters["ConnectionClosedCount"]) >= 12  # evictions at the 3 day changes


def test_sigkill_midway_loses_no_line(agent, tmp_path):
    spool, out = tmp_path / "spool", tmp_path / "out"
    positions = tmp_path / "state" / "taildir-positions.json"
    total, chunk = 30000, 3000
    chunks = [range(i, min(i + chunk, total)) for i in range(0, total, chunk)]
    flume = agent()
    for i, numbers in enumerate(chunks[:4]):
        write_lines(spool / f"apps-{i % 2 + 1}.log", numbers)
        time.sleep(0.3)
    # TAILDIR saves its read positions every 3 s, the first time 5 s after it starts: a kill
    # before that re-reads the spool from the start (all duplicates, but nothing lost).
    wait_until(positions.exists, 15, message="TAILDIR's first saved positions")
    # Killed while it works on a fresh chunk (tailing, channel puts and sink batches at once).
    write_lines(spool / "apps-1.log", chunks[4])
    wait_until(lambda: line_count(out) > 4 * chunk, 15, interval=0.02, message="chunk 5 started")
    flume.kill()
    at_kill = line_count(out)
    for i, numbers in enumerate(chunks[5:], start=5):
        write_lines(spool / f"apps-{i % 2 + 1}.log", numbers)

    flume = agent()
    wait_until(
        lambda: len(check_delivery(out, range(total))) == total,
        45,
        interval=0.5,
        message=f"all {total} lines after the restart",
    )
    assert flume.stop(), tail(flume.log)
    seen = check_delivery(out, range(total))
    lost = total - len(seen)
    duplicates = sum(count - 1 for count in seen.values())
    cut = flume.log.read_text().count("ended in a partial line")
    print(
        f"\nSIGKILL with {at_kill} of {total} lines delivered: {lost} lost, {duplicates} "
        "duplicates (at-least-once: what was read since TAILDIR's last saved position, and a "
        f"sink batch in flight, come again); partial last lines cut on restart: {cut}"
    )
    assert lost == 0


def test_header_values_never_leave_the_directory(agent, tmp_path):
    spool, out = tmp_path / "spool", tmp_path / "out"
    now = datetime.now(UTC).date()
    lines = [
        "2026-12-06T05:00:00+00:00 ../../etc passwd host task escape by env 1",
        "2026-12-06T05:00:00+00:00 prod .. host task escape by app 2",
        "2026-12-06T05:00:00+00:00 prod a/b host task a slash 3",
        "too few fields 4",
        "not-a-time prod hello host task a bad time 5",
        "2026-02-30T05:00:00+00:00 prod hello host task no such day 6",
    ]
    (spool / "apps-1.log").write_text("".join(line + "\n" for line in lines))
    flume = agent()
    wait_until(lambda: line_count(out) >= len(lines), 30, message="the odd lines delivered")
    assert flume.stop(), tail(flume.log)

    today = {str(now), str(datetime.now(UTC).date()), str(now + timedelta(days=1))}
    found = {line: rel for rel, line in delivered(out)}
    assert found.pop(lines[0]) == "_invalid/passwd/2026-12-06.log"
    assert found.pop(lines[1]) == "prod/_invalid/2026-12-06.log"
    assert found.pop(lines[2]) == "prod/_invalid/2026-12-06.log"
    rel = found.pop(lines[3])
    assert rel.startswith("_unknown/_unknown/") and rel[-14:-4] in today, rel
    for line in lines[4:]:
        rel = found.pop(line)
        assert rel.startswith("prod/hello/") and rel[-14:-4] in today, (line, rel)
    assert not found
    # Nothing anywhere else: only the agent's own files, the spool and the output directory
    # (out/../../etc would be next to tmp_path).
    top = {p.name for p in tmp_path.iterdir()}
    assert top == {"spool", "state", "out", "flume.conf", "agent.log"}, top
    assert not (tmp_path.parent / "etc").exists()


# --- CheckConfig ------------------------------------------------------------------------------


def check_config(java: str, lib: Path, conf: Path, agent_name: str = AGENT):
    return subprocess.run(
        [java, "-cp", f"{lib}/*", "io.saltyard.flume.CheckConfig", "-n", agent_name, "-f", conf],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_accepts_the_pipeline_and_starts_nothing(java, flume_lib, tmp_path):
    conf = tmp_path / "flume.conf"
    conf.write_text(pipeline_config(tmp_path))
    result = check_config(java, flume_lib, conf)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK: 1 sources, 1 channels, 1 sinks"
    # configure() only: the file channel makes its directories when it starts, the sink its
    # files when it writes; the TAILDIR source does create its position file's directory.
    assert not (tmp_path / "state" / "checkpoint").exists()
    assert not (tmp_path / "state" / "data").exists()
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "state").is_dir()
    assert not (tmp_path / "state" / "taildir-positions.json").exists()


def replace_line(config: str, key: str, value: str | None) -> str:
    """config with the property ``key`` set to value (appended if absent; removed if None)."""
    lines = [line for line in config.splitlines() if not line.startswith(f"{key} =")]
    if value is not None:
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


BAD_CONFIGS = {
    "transaction capacity above capacity": (
        [("channels.durable.capacity", "100"), ("channels.durable.transactionCapacity", "1000")],
        "channel durable: File Channel transaction capacity cannot be greater than the capacity",
    ),
    "unknown sink type": (
        [("sinks.out.type", "nosuch")],
        "sink out: unknown type 'nosuch'",
    ),
    "source channel missing": (
        [("sources.spool.channels", "nowhere")],
        "source spool: No Channels configured for spool "
        "(channel nowhere is not declared in log1.channels)",
    ),
    "sink directory missing": (
        [("sinks.out.directory", None)],
        "sink out: GroupedFileSink out: the setting 'directory' is required",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_check_config_refuses_what_flume_would_drop(java, flume_lib, tmp_path, case):
    changes, expected = BAD_CONFIGS[case]
    config = pipeline_config(tmp_path)
    for key, value in changes:
        config = replace_line(config, f"{AGENT}.{key}", value)
    conf = tmp_path / "flume.conf"
    conf.write_text(config)
    result = check_config(java, flume_lib, conf)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert expected in result.stderr, result.stderr
    assert result.stdout == ""


def test_check_config_refuses_an_agent_not_in_the_file(java, flume_lib, tmp_path):
    conf = tmp_path / "flume.conf"
    conf.write_text(pipeline_config(tmp_path))
    result = check_config(java, flume_lib, conf, agent_name="log2")
    assert result.returncode == 1
    assert result.stderr.strip() == f"agent log2: not in {conf} (agents there: {AGENT})"


def test_check_config_accepts_a_kafka_sink_without_connecting(java, flume_lib, tmp_path):
    # A listener in the bootstrap list: whatever connects to Kafka would knock here.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        conf = tmp_path / "flume.conf"
        conf.write_text(
            pipeline_config(
                tmp_path,
                sink=(
                    f"{AGENT}.sinks.out.type = org.apache.flume.sink.kafka.KafkaSink\n"
                    f"{AGENT}.sinks.out.kafka.bootstrap.servers = kafka1:9092,127.0.0.1:{port}\n"
                    f"{AGENT}.sinks.out.kafka.topic = applogs\n"
                    f"{AGENT}.sinks.out.flumeBatchSize = 1000\n"
                    f"{AGENT}.sinks.out.kafka.producer.acks = all\n"
                ),
            )
        )
        result = check_config(java, flume_lib, conf)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "OK: 1 sources, 1 channels, 1 sinks"
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_the_tarball_holds_the_lib_dir(flume_lib):
    version = subprocess.run(
        [str(BUILD), "--print-version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = REPO / "artifacts" / "flume" / version / f"saltyard-flume-{version}.tar.gz"
    listing = subprocess.run(
        ["tar", "-tzf", archive], capture_output=True, text=True, check=True
    ).stdout.split()
    jars = sorted(p.name for p in flume_lib.glob("*.jar"))
    assert sorted(name.removeprefix("lib/") for name in listing if name != "lib/") == jars
    assert f"flume-ng-node-{version}.jar" in jars and "saltyard-flume-1.0.0.jar" in jars
    digest = (archive.parent / (archive.name + ".sha256")).read_text().split()
    assert digest[1] == archive.name
    assert os.path.getsize(archive) > 0


@pytest.mark.parametrize("site", ["local", "example-prod"])
def test_check_config_accepts_what_the_logging_state_renders(java, flume_lib, tmp_path, site):
    """flume.conf as states/logging renders it (saltyard.applog.flume_conf) from the defaults and
    the site's pillar, its paths moved into tmp: Flume's own loader takes every component."""
    import yaml

    from saltyard.applog import flume_conf

    params = yaml.safe_load((REPO / "states/logging/defaults.yaml").read_text())["logging"]
    site_pillar = yaml.safe_load((REPO / f"pillar/sites/{site}.sls").read_text())["logging"]

    def merge(into: dict, over: dict) -> None:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(params, site_pillar)
    params["spool_dir"] = str(tmp_path / "spool")
    params["flume"]["state_dir"] = str(tmp_path / "state")
    params["flume"]["channel"]["minimum_required_space_mb"] = 1
    if params["flume"]["sink"]["type"] == "files":
        params["flume"]["sink"]["directory"] = str(tmp_path / "out")
    assert flume_conf.problems(params) == []
    conf = tmp_path / "flume.conf"
    conf.write_text(flume_conf.render(AGENT, params))
    result = check_config(java, flume_lib, conf)
    assert result.returncode == 0, result.stderr
    sources = 1 + len(params["flume"]["syslog_sources"])
    assert result.stdout.strip() == f"OK: {sources} sources, 1 channels, 1 sinks"
