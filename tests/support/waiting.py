"""Waiting in tests: poll a condition until it holds, or fail the test saying what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    step: float = 0.1,
) -> T:
    """Call ``condition`` every ``step`` seconds until it returns a true value, and return
    that value.  If it has not by ``timeout`` seconds, fail the test with
    ``timed out after TIMEOUT s waiting for WHAT`` (``what`` may be a callable, asked only
    then, e.g. for a log's tail).  The condition is asked at least once, and once more at
    the deadline; an exception it raises (e.g. an assertion that a process is still
    alive) fails the test at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {text}")
        time.sleep(min(step, left))
