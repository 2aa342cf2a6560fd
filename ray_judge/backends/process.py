"""A CLI child process in its own process group: spawn, signal, wait, terminate, and read
its output within bounds. Shared by the one-shot and the session Claude Code backends.

Every child is started with ``start_new_session=True``, so its process group id is its
pid and a signal to the group also reaches the strays it leaves behind. Waiting never
trusts ``proc.wait()`` (see :func:`exited`), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["MAX_STDERR_TAIL", "MAX_STDOUT", "REAP_S", "Spawn", "exited", "feed",
           "read_bounded", "settle", "signal_group", "terminate_group"]

logger = logging.getLogger(__name__)

Spawn = Callable[..., Awaitable[Process]]

TERM_GRACE_S = 1.0  # SIGTERM -> SIGKILL; the CLI needs ~0.1 s
# For a SIGKILLed group to be reaped and its pipes to close. Worst case, a timeout ends
# 1 + 1.5 + 1.5 s late: inside the 5 s the JudgeRunner allows before it gives up on us.
REAP_S = 1.5
POLL_S = 0.02
MAX_STDOUT = 16 << 20
MAX_STDERR_TAIL = 2000


def signal_group(proc: Process, sig: int) -> None:
    # start_new_session=True made the CLI the leader of a group whose id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def exited(proc: Process) -> int:
    """The exit status, as soon as the process has exited and been reaped.

    Not ``proc.wait()``: before Python 3.12 it also waits for the pipes to close, so a
    stray grandchild holding stdout would hold it too. ``returncode`` is set by the
    child watcher at the exit itself.
    """
    while proc.returncode is None:
        await asyncio.sleep(POLL_S)
    return proc.returncode


async def terminate_group(proc: Process) -> None:
    """SIGTERM the group, SIGKILL it after a grace; wait a bounded time for the reaping."""
    signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(exited(proc), TERM_GRACE_S)
    signal_group(proc, signal.SIGKILL)  # also the strays the leader left behind
    try:
        await asyncio.wait_for(exited(proc), REAP_S)
    except asyncio.TimeoutError:
        logger.error("claude process %d survived SIGKILL for %.0fs", proc.pid, REAP_S)


async def settle(io: asyncio.Future[Any]) -> None:
    """Let the pipe tasks end (EOF once the group is dead), or cancel them; bounded."""
    # wait_for cancels the tasks on timeout; a failed attempt's output no longer matters.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(io, REAP_S)


async def feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the CLI exited without reading it all; its output says why


async def read_bounded(stream: asyncio.StreamReader, limit: int, *, tail: bool = False) -> bytes:
    """Everything ``stream`` gives until EOF, keeping at most ``limit`` bytes (head or tail)."""
    kept = bytearray()
    while chunk := await stream.read(1 << 16):
        if tail:
            kept += chunk
            del kept[:-limit]
        elif len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)
