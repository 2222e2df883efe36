"""Processes a test starts (ranks, workers): none outlives the test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def killed_at_exit() -> Iterator[list[subprocess.Popen]]:
    """A list for the processes a block starts.  On leaving the block, however it is
    left, every one still running is killed (SIGKILL), then every one is reaped
    (at most 10 s each: a process that will not die fails the test)."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(timeout=10)
