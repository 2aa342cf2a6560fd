"""Polling a live judge until a condition holds, for the tests that watch one.

Each module binds its own bound on every poll (``WAIT_S``, reached only when something is
broken) and its own pace::

    wait_for = functools.partial(waiting.wait_for, timeout=WAIT_S, every=0.1)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_for"]


def wait_for(predicate: Callable[[], Any], what: str, *, timeout: float, every: float = 0.1,
             details: Callable[[], str] = lambda: "") -> Any:
    """``predicate()``'s first truthy value, polled every ``every`` seconds; an
    AssertionError naming ``what`` (and ``details()``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, (
            f"timed out after {timeout:g}s waiting for {what} {details()}".rstrip())
        time.sleep(every)
