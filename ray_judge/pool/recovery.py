"""Restart recovery: how the client waits for a judge that died or is restarting.

When a ``score_batch`` call fails with ``RayActorError`` (the judge died, is being
restarted by Ray, or cannot be reached), the batcher holds that call's items at the
front of its queue, with everything that arrives after them, and
:func:`wait_for_judge` looks the judge up afresh and pings it, with backoff, until it
(or a new actor under the same name) answers. The batcher then sends what it held
again, so every request still gets exactly one result; one whose deadline passes first
gets a ``timeout`` Verdict, and once no held request waits, the wait ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["wait_for_judge"]

#: How long a ping may take while the judge comes back, and the backoff between pings.
PING_TIMEOUT_S = 5.0
BACKOFF_S = (0.05, 1.0)


async def wait_for_judge(lookup: Callable[[], Any], waiting: Callable[[], bool],
                         still_down: Callable[[str], None]) -> Any | None:
    """The judge's handle once it answers ``ping``; None once nothing waits for it.

    Args:
        lookup: finds the judge's handle (blocking: it runs in a thread), afresh on
            each attempt, since a restarted judge may be a new actor.
        waiting: whether any held request still waits for the judge.
        still_down: told why (the exception's type name) each time an attempt fails.
    """
    delay = BACKOFF_S[0]
    while True:
        if not waiting():
            return None
        try:
            handle = await asyncio.to_thread(lookup)
            pong = await asyncio.wait_for(
                asyncio.wrap_future(handle.ping.remote().future()), PING_TIMEOUT_S)
            if pong == "pong":
                return handle
        except Exception as exc:  # still restarting, or not there at all yet
            still_down(type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_S[1])
