"""Waiting on an event instead of sleeping: a condition polled with a deadline, and
a failure that says what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, *, every: float = 0.05,
             detail: Callable[[], object] | None = None) -> T:
    """`predicate()`'s first true value, checked every `every` s for at most `timeout` s
    (and once more at the deadline).  Raises AssertionError naming `what`, with
    `detail()` appended when given (a log tail, the last value seen)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(every, left))
    extra = f"; {detail()}" if detail is not None else ""
    raise AssertionError(f"{what}: not within {timeout} s{extra}")
