"""Open-model HTTP load with vegeta, for the lb tests and benchmarks.

vegeta sends requests at a fixed rate whatever the answers take (a slow or failing backend does
not slow the load down, as it would a closed loop of clients), and records every result. It is
built once by ``scripts/build-vegeta.sh`` (run by ``scripts/host-setup.sh``).

    from saltyard.localcluster import vegeta
    result = vegeta.attack("http://127.0.0.1:8080/id", host="shop-web.fat.saltyard.test",
                           rate=200, duration=60)
    print(result.summary())

Load goes only to loopback or to the local cluster's network (the inventory's subnet: the
containers and VMs the tests created), never to another private or public address, and is
bounded: at most ``MAX_RATE`` requests/s for at most ``MAX_DURATION`` seconds.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

VERSION = "12.13.0"
BINARY = Path(os.environ.get("SALTYARD_VEGETA", f"/var/cache/saltyard/vegeta/v{VERSION}/vegeta"))
MAX_RATE = 1000
MAX_DURATION = 600.0


class LoadError(ValueError):
    """A load that this module refuses to send (bad target, rate or duration)."""


def _cluster_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    from saltyard import inventory

    return [ipaddress.ip_network(inventory.load().network["subnet"])]


def check_target(url: str, networks: list | None = None) -> str:
    """The URL's host if it is loopback or inside ``networks`` (default: the local cluster's
    subnet from the inventory); LoadError naming it otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"load target {url!r} is not an http(s) URL")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        raise LoadError(
            f"load target {url!r}: {parts.hostname!r} is not an IP address (load goes only to "
            "loopback or the local cluster's network)"
        ) from None
    if address.is_loopback:
        return parts.hostname
    allowed = [ipaddress.ip_network(n) for n in networks] if networks else _cluster_networks()
    if address.is_unspecified or not any(address in net for net in allowed):
        raise LoadError(
            f"load target {url!r}: {address} is neither loopback nor in the local cluster's "
            f"network ({', '.join(map(str, allowed))})"
        )
    return parts.hostname


@dataclass
class AttackResult:
    """What vegeta recorded: one entry per request sent."""

    rate: float
    duration: float
    requests: int = 0
    status_codes: Counter = field(default_factory=Counter)  # code -> count; 0 = no answer
    errors: Counter = field(default_factory=Counter)  # vegeta's error text -> count
    bodies: Counter = field(default_factory=Counter)  # body of the 200 answers -> count
    latencies: dict[str, float] = field(default_factory=dict)  # p50/p95/p99/max/mean, seconds
    failures: list[dict] = field(default_factory=list)  # {at, time, code, error, latency}

    @property
    def ok(self) -> int:
        return self.status_codes.get(200, 0)

    @property
    def failed(self) -> int:
        """Requests not answered 200 (another status, or no answer at all)."""
        return self.requests - self.ok

    def summary(self) -> str:
        lat = self.latencies
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.status_codes.items()))
        return (
            f"{self.requests} requests at {self.rate:g}/s for {self.duration:.1f} s, "
            f"{self.failed} failed (status codes {{{codes}}}), latency "
            f"p50 {1000 * lat.get('p50', 0):.1f} ms, p95 {1000 * lat.get('p95', 0):.1f} ms, "
            f"p99 {1000 * lat.get('p99', 0):.1f} ms, max {1000 * lat.get('max', 0):.1f} ms"
        )


class Attack:
    """A vegeta attack running in the background; ``result()`` waits for it and decodes."""

    def __init__(
        self,
        url: str,
        *,
        host: str | None = None,
        rate: int = 50,
        duration: float = 10.0,
        timeout: float = 5.0,
        keepalive: bool = True,
        workdir: Path | None = None,
    ):
        check_target(url)
        if not isinstance(rate, int) or not 1 <= rate <= MAX_RATE:
            raise LoadError(f"rate {rate!r}: a whole number of requests/s, 1..{MAX_RATE}")
        if not 0 < duration <= MAX_DURATION:
            raise LoadError(f"duration {duration!r}: more than 0 and at most {MAX_DURATION} s")
        if not 0 < timeout <= 60:
            raise LoadError(f"timeout {timeout!r}: more than 0 and at most 60 s")
        if not BINARY.exists():
            raise FileNotFoundError(f"{BINARY} is missing: run scripts/build-vegeta.sh")
        self.url, self.rate, self.duration, self.timeout = url, rate, duration, timeout
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="saltyard-vegeta-")
            workdir = Path(self._tmp.name)
        self.results_file = workdir / "vegeta.bin"
        self.log_file = workdir / "vegeta.log"
        args = [
            str(BINARY),
            "attack",
            f"-rate={rate}/1s",
            f"-duration={int(duration * 1000)}ms",
            f"-timeout={int(timeout * 1000)}ms",
            f"-keepalive={str(keepalive).lower()}",
            # The answers of the test apps are task ids; never keep more of a body than that.
            "-max-body=256",
            "-redirects=-1",
            f"-output={self.results_file}",
        ]
        if host:
            args.append(f"-header=Host: {host}")
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
            )
        self.proc.stdin.write(f"GET {url}\n".encode())
        self.proc.stdin.close()
        self.started = time.monotonic()

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """End the attack now (vegeta stops sending on SIGINT and writes what it recorded);
        ``result()`` then decodes the requests sent so far.

        A SIGINT that comes before vegeta listens for it is lost when the process started with
        SIGINT ignored (any background job of a non-interactive shell, as CI runs us), and kills
        it outright otherwise; vegeta listens before it writes its first result. So: wait for
        the first result, then signal, and again each second until it has ended."""
        first = time.monotonic() + timeout / 3
        while self.running() and time.monotonic() < first:
            if self.results_file.exists() and self.results_file.stat().st_size > 0:
                break
            time.sleep(0.05)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                continue

    def result(self) -> AttackResult:
        """Wait for the attack (its duration plus the request timeout, and a margin), decode."""
        try:
            self.proc.wait(self.duration + self.timeout + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"vegeta overran {self.duration} s; killed") from None
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"vegeta attack exited {self.proc.returncode}: {self.log_file.read_text()}"
            )
        try:
            return decode(self.results_file, self.rate, self.duration)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()


def attack(url: str, **kwargs) -> AttackResult:
    """Run an attack to its end (see ``Attack`` for the arguments)."""
    return Attack(url, **kwargs).result()


def decode(results_file: Path, rate: float, duration: float) -> AttackResult:
    """vegeta's binary results: its own report for the latencies, every result for the rest."""
    report = json.loads(
        subprocess.run(
            [str(BINARY), "report", "-type=json", str(results_file)],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    )
    lat = report["latencies"]  # nanoseconds
    result = AttackResult(
        rate=rate,
        # What the attack lasted (first to last request sent), not what was asked: an attack
        # stopped early (stop()) would otherwise print the requested duration.
        duration=report["duration"] / 1e9 if report.get("duration") else duration,
        latencies={
            "mean": lat["mean"] / 1e9,
            "p50": lat["50th"] / 1e9,
            "p95": lat["95th"] / 1e9,
            "p99": lat["99th"] / 1e9,
            "max": lat["max"] / 1e9,
        },
    )
    encoded = subprocess.run(
        [str(BINARY), "encode", "-to=json", str(results_file)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    first = None
    for line in encoded.splitlines():
        if not line.strip():
            continue
        hit = json.loads(line)
        result.requests += 1
        code = int(hit.get("code") or 0)
        result.status_codes[code] += 1
        stamp = _seconds(hit["timestamp"])
        first = stamp if first is None else min(first, stamp)
        if code == 200:
            result.bodies[base64.b64decode(hit.get("body") or "").decode(errors="replace")] += 1
        else:
            error = hit.get("error") or ""
            result.errors[error or f"HTTP {code}"] += 1
            result.failures.append(
                {
                    "at": stamp,
                    "time": stamp,  # seconds since the epoch, when it was sent
                    "code": code,
                    "error": error,
                    "latency": hit["latency"] / 1e9,
                }
            )
    if result.requests != report["requests"]:
        raise RuntimeError(
            f"vegeta encode gave {result.requests} results, its report {report['requests']}"
        )
    for failure in result.failures:  # seconds after the first request
        failure["at"] = round(failure["at"] - (first or 0.0), 3)
    return result


def _seconds(timestamp: str) -> float:
    """An RFC 3339 timestamp with nanoseconds (Go's format) as seconds since the epoch."""
    from datetime import datetime

    main, _, rest = timestamp.partition(".")
    if not rest:  # no fraction: "2026-11-26T10:00:00Z" or "...+01:00"
        return datetime.fromisoformat(timestamp).timestamp()
    digits = len(rest) - len(rest.lstrip("0123456789"))
    fraction, zone = rest[:digits], rest[digits:]
    whole = datetime.fromisoformat(main + (zone if zone != "Z" else "+00:00")).timestamp()
    return whole + float("0." + fraction)
