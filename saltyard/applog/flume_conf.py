"""The log node's Flume agent configuration, from pillar ``logging:flume`` (states/logging).

One source follows the spool files that the log node's rsyslog writes (TAILDIR: it keeps its
read positions in a file, so a restarted Flume resumes where it stopped and loses nothing), one
durable file channel, one sink chosen by pillar. Optional syslog sources take applications' own
lines over UDP or TCP (they can lose lines: docs/logging.md).

``problems(params)`` names every bad value before anything is written; ``render(agent, params)``
returns the properties text, which the state checks once more with Flume's own loader
(``io.saltyard.flume.CheckConfig``) before it replaces the live file.
"""

from __future__ import annotations

import re

SINK_TYPES = ("files", "kafka", "hdfs")
SYSLOG_SOURCE_TYPES = {"udp": "syslogudp", "tcp": "syslogtcp"}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# A spool line as the log node's rsyslog writes it (states/logging/files/rsyslog-log-node.conf):
# "<rfc3339 time> <env> <app> <host> <task> <message>"; the interceptor turns the first five
# fields into event headers, which the sink groups by.
SPOOL_HEADERS = ("time", "env", "app", "host", "task")
SPOOL_REGEX = r"^(\\S+) (\\S+) (\\S+) (\\S+) (\\S+)"


def _port_problem(where: str, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return f"{where} is {value!r}: a TCP/UDP port (1-65535)"
    return None


def problems(params: dict) -> list[str]:
    """Every bad value of the ``logging`` pillar, each message naming its key and value."""
    found: list[str] = []
    flume = params.get("flume") or {}
    channel = flume.get("channel") or {}
    capacity, txn = channel.get("capacity"), channel.get("transaction_capacity")
    for key, value in (("capacity", capacity), ("transaction_capacity", txn)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            found.append(f"pillar logging:flume:channel:{key} is {value!r}: a positive integer")
    if not found and capacity < txn:
        found.append(
            f"pillar logging:flume:channel:capacity {capacity} is below its "
            f"transaction_capacity {txn}: a transaction could never fit in the channel"
        )
    sink = flume.get("sink") or {}
    kind = sink.get("type")
    if kind not in SINK_TYPES:
        found.append(
            f"pillar logging:flume:sink:type is {kind!r}; saltyard knows {', '.join(SINK_TYPES)}"
        )
    elif kind == "files" and not str(sink.get("directory") or "").startswith("/"):
        found.append(
            f"pillar logging:flume:sink:directory is {sink.get('directory')!r}: an absolute path"
        )
    elif kind == "kafka":
        for key in ("bootstrap_servers", "topic"):
            if not sink.get(key):
                found.append(f"pillar logging:flume:sink:{key} is empty: the kafka sink needs it")
    elif kind == "hdfs" and not str(sink.get("path") or "").startswith("hdfs://"):
        found.append(f"pillar logging:flume:sink:path is {sink.get('path')!r}: an hdfs:// URI")
    hours = params.get("spool_keep_hours")
    if isinstance(hours, bool) or not isinstance(hours, int) or hours < 1:
        found.append(f"pillar logging:spool_keep_hours is {hours!r}: a whole number of hours >= 1")
    disk = str(params.get("queue_max_disk"))
    if not re.fullmatch(r"[1-9][0-9]*[kmg]?", disk):
        found.append(f"pillar logging:queue_max_disk is {disk!r}: a size such as 512m or 2g")
    # Every listening port once: two sources on one port would leave one of them dead.
    ports: dict[tuple[str, int], str] = {}

    def claim(where: str, proto: str, port) -> None:
        problem = _port_problem(where, port)
        if problem:
            found.append(problem)
            return
        other = ports.get((proto, port))
        if other:
            found.append(f"{where} is {port}/{proto}, already used by {other}")
        ports[(proto, port)] = where

    claim("pillar logging:relp_port", "tcp", params.get("relp_port"))
    claim("pillar logging:flume:monitoring_port", "tcp", flume.get("monitoring_port"))
    names = set()
    for i, source in enumerate(flume.get("syslog_sources") or []):
        where = f"pillar logging:flume:syslog_sources[{i}]"
        name = source.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name) or name == "spool":
            found.append(f"{where}:name is {name!r}: lowercase letters, digits, _ (not 'spool')")
        elif name in names:
            found.append(f"{where}:name {name!r} is used twice")
        names.add(name)
        proto = source.get("protocol")
        if proto not in SYSLOG_SOURCE_TYPES:
            found.append(f"{where}:protocol is {proto!r}; one of udp, tcp")
            continue
        claim(f"{where}:port", proto, source.get("port"))
    return found


def _props(prefix: str, values: dict) -> list[str]:
    return [f"{prefix}.{key} = {value}" for key, value in values.items()]


def render(agent: str, params: dict) -> str:
    """Flume's properties file for ``agent``. Call ``problems`` first: this assumes good input."""
    flume, channel, sink = params["flume"], params["flume"]["channel"], params["flume"]["sink"]
    spool, state = params["spool_dir"], flume["state_dir"]
    syslog = flume.get("syslog_sources") or []
    sources = ["spool"] + [s["name"] for s in syslog]
    a = agent
    lines = [
        "# Managed by Salt (saltyard logging): the log node's Flume agent. docs/logging.md.",
        f"{a}.sources = {' '.join(sources)}",
        f"{a}.channels = durable",
        f"{a}.sinks = out",
        "",
        "# The spool files of the log node's rsyslog (one per hour), followed by position.",
        f"{a}.sources.spool.type = TAILDIR",
        f"{a}.sources.spool.channels = durable",
        f"{a}.sources.spool.positionFile = {state}/taildir-positions.json",
        f"{a}.sources.spool.filegroups = apps",
        # Java's properties reader drops a lone backslash: "\\." reaches Flume as "\.".
        f"{a}.sources.spool.filegroups.apps = {spool}/apps-.*\\\\.log",
        f"{a}.sources.spool.batchSize = {channel['transaction_capacity']}",
        # With nothing new, a pollable source sleeps 1 s, 2 s, ... up to 5 s by default before it
        # looks again: every line would wait that long. Look again within 50-250 ms.
        f"{a}.sources.spool.backoffSleepIncrement = 50",
        f"{a}.sources.spool.maxBackoffSleep = 250",
        f"{a}.sources.spool.interceptors = fields",
        f"{a}.sources.spool.interceptors.fields.type = regex_extractor",
        f"{a}.sources.spool.interceptors.fields.regex = {SPOOL_REGEX}",
        f"{a}.sources.spool.interceptors.fields.serializers = "
        + " ".join(f"s{i}" for i in range(len(SPOOL_HEADERS))),
    ]
    lines += [
        f"{a}.sources.spool.interceptors.fields.serializers.s{i}.name = {header}"
        for i, header in enumerate(SPOOL_HEADERS)
    ]
    for source in syslog:
        p = f"{a}.sources.{source['name']}"
        lines += [
            "",
            f"# Applications' own syslog lines over {source['protocol'].upper()} (docs/logging.md:"
            " what this source can lose).",
            f"{p}.type = {SYSLOG_SOURCE_TYPES[source['protocol']]}",
            f"{p}.channels = durable",
            f"{p}.host = {source.get('bind', '0.0.0.0')}",
            f"{p}.port = {source['port']}",
            f"{p}.interceptors = env",
            f"{p}.interceptors.env.type = static",
            f"{p}.interceptors.env.key = env",
            f"{p}.interceptors.env.value = {source.get('env', 'syslog')}",
        ]
    c = f"{a}.channels.durable"
    lines += [
        "",
        "# Durable: events survive a Flume restart; a put fails (the source retries) when full.",
        f"{c}.type = file",
        f"{c}.checkpointDir = {state}/checkpoint",
        f"{c}.dataDirs = {state}/data",
        f"{c}.capacity = {channel['capacity']}",
        f"{c}.transactionCapacity = {channel['transaction_capacity']}",
        f"{c}.minimumRequiredSpace = {channel['minimum_required_space_mb'] * 1024 * 1024}",
        "",
    ]
    s = f"{a}.sinks.out"
    lines += [f"{s}.channel = durable"]
    if sink["type"] == "files":
        lines += [
            "# One file per env, app and day: <directory>/<env>/<app>/<YYYY-MM-DD>.log",
            f"{s}.type = io.saltyard.flume.GroupedFileSink",
            f"{s}.directory = {sink['directory']}",
            f"{s}.batchSize = {channel['transaction_capacity']}",
        ]
    elif sink["type"] == "kafka":
        lines += [
            "# Kafka: every line to one topic, keyed by app (a partition keeps an app's order).",
            f"{s}.type = org.apache.flume.sink.kafka.KafkaSink",
            f"{s}.kafka.bootstrap.servers = {sink['bootstrap_servers']}",
            f"{s}.kafka.topic = {sink['topic']}",
            f"{s}.flumeBatchSize = {channel['transaction_capacity']}",
            f"{s}.kafka.producer.acks = all",
        ]
    else:
        lines += [
            "# HDFS: one directory per env, app and day.",
            f"{s}.type = hdfs",
            f"{s}.hdfs.path = {sink['path'].rstrip('/')}/%{{env}}/%{{app}}/%Y-%m-%d",
            f"{s}.hdfs.fileType = DataStream",
            f"{s}.hdfs.useLocalTimeStamp = true",
            f"{s}.hdfs.batchSize = {channel['transaction_capacity']}",
        ]
    lines += _props(s, sink.get("options") or {})
    return "\n".join(lines) + "\n"
