"""Stopping the processes that the host-level test harnesses and benchmarks start."""

from __future__ import annotations

import signal
import subprocess


def stop_process(
    proc: subprocess.Popen | None, grace: float = 15, sig: int = signal.SIGTERM
) -> int | None:
    """``sig`` (SIGTERM), then SIGKILL if it is still running after ``grace`` seconds; the exit
    code (None for a process never started)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode if proc is not None else None
