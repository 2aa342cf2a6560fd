"""One long-lived ``claude`` process speaking stream-json: each user message one line on
its stdin, the turn's events read back from its stdout up to the ``result``.

What the CLI does with these lines, and how the sessions are kept, retired and
replaced, is told in :mod:`.ccode_session`, the pool that uses them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from asyncio.subprocess import Process
from pathlib import Path
from typing import Any

from .ccode_prompt import SessionKey
from .process import MAX_STDERR_TAIL, MAX_STDOUT, read_bounded

__all__ = ["CliSession", "SessionBroken"]

# The user message that starts a new conversation in the same process.
_CLEAR = "/clear"
_MAX_NOISE = 2000  # non-JSON stdout kept for an error message


class SessionBroken(Exception):
    """The session cannot go on: its process ended, or it broke the protocol."""


class CliSession:
    """One long-lived ``claude`` process, serving one item (or one clear) at a time."""

    _ids = itertools.count(1)

    def __init__(self, proc: Process, key: SessionKey, call_dir: Path) -> None:
        assert proc.stdin and proc.stdout and proc.stderr
        self.proc = proc
        self.key = key  # (system prompt, schema, max_tokens): fixed for the process's life
        self.schema = key[1] is not None
        self.call_dir = call_dir
        self.id = next(self._ids)
        self.items = 0
        self.idle_since = time.monotonic()
        self.disposed = False
        self.noise = bytearray()
        self.stderr = asyncio.ensure_future(read_bounded(proc.stderr, MAX_STDERR_TAIL, tail=True))

    def __repr__(self) -> str:
        return f"CliSession({self.id}, pid={self.proc.pid}, items={self.items})"

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def turn(self, content: str, deadline: float) -> tuple[set[str], bytes]:
        """Send one user message; the event types seen and the raw ``result`` line.

        Under a schema, the raw lines of every event of the turn, the result last: a
        model that answered without structured output left its text in them.
        """
        assert self.proc.stdin is not None
        line = json.dumps({"type": "user", "message": {"role": "user", "content": content}})
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise SessionBroken(f"stopped reading its input ({exc})") from None
        seen: set[str] = set()
        lines: list[bytes] = []
        while True:
            event, raw = await self._next_event(deadline)
            kind = str(event.get("type"))
            seen.add(kind)
            if kind == "result":
                return seen, b"".join([*lines, raw])
            if self.schema and kind == "assistant":
                lines.append(raw)

    async def clear(self, deadline: float) -> None:
        """Start a new conversation; SessionBroken unless the CLI confirms it did."""
        seen, line = await self.turn(_CLEAR, deadline)
        result = json.loads(line)
        if "conversation_reset" not in seen or result.get("is_error") is not False:
            raise SessionBroken(f"did not confirm {_CLEAR} (events {sorted(seen)})")

    def output(self) -> str:
        """What the process printed besides events: its stderr's tail once read, else the
        non-JSON lines of its stdout."""
        return _done_text(self.stderr) or self.noise.decode("utf-8", "replace")

    async def _next_event(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except ValueError:  # a line beyond the stream's limit
                raise SessionBroken(f"printed a line over {MAX_STDOUT} bytes") from None
            if not raw:
                raise SessionBroken("ended its output")
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            if isinstance(event, dict):
                return event, raw
            self.noise += raw
            del self.noise[:-_MAX_NOISE]


def _done_text(task: asyncio.Future[bytes]) -> str:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result().decode("utf-8", "replace")
    return ""
