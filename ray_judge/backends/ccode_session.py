"""The Claude Code CLI backend in session mode: long-lived ``claude`` processes, each
verdict in a fresh context (``LLM_JUDGE_CCODE_MODE=session``, the default).

A one-shot ``claude -p`` costs ~0.55 CPU-s of start-up per verdict; that, not the model,
caps a 2-core node at ~3 verdicts/s. Here each worker keeps a few CLI processes running::

    claude -p --input-format stream-json --output-format stream-json --model <full id> \\
        --system-prompt <rubric> --tools "" --max-turns 1 --no-session-persistence \\
        --safe-mode --verbose

which is the one-shot command line (:meth:`ClaudeCodeBackend.argv`, so every security
flag there holds here too) with JSON lines on both pipes. What CLI 2.1.332 does with
them, measured against the fake Messages API on 127.0.0.1:

* Each stdin line ``{"type": "user", "message": {...}}`` is one turn. stdout carries
  events (``system``/``init``, ``assistant``, ...) and ends the turn with one
  ``{"type": "result", ...}`` object of the same shape ``--output-format json`` prints,
  so :func:`~.ccode_output.parse_cli_output` reads verdicts and errors alike.
* Turns pile up into one conversation: item 2's request would carry item 1. The user
  message ``/clear`` starts a new one (the CLI prints ``conversation_reset``, then a
  result with ``num_turns: 0``); the next request carries no earlier turn, only a note
  that ``/clear`` ran (~100 input tokens). We clear after every verdict, in the
  background, and use a session again only once the reset was confirmed; otherwise the
  process is replaced.
* A message starting with ``/`` is a command, also inside a content block. A judge
  prompt starts with its PROMPT block marker; anything else goes through one-shot.
* The system prompt, ``--json-schema`` and ``max_tokens`` are fixed per process, so
  sessions are kept per (system prompt, schema, max_tokens) (per-request rubrics and
  each judge's schema get their own; the least recently used idle one makes room).
  A schema turn's ``assistant`` events are kept: a model that answered in text instead
  of calling ``StructuredOutput`` left its answer there.
* Per verdict ~0.04 CPU-s plus ~0.04 for the clear, after ~0.5 CPU-s to start; resident
  memory grows from ~190 to ~320 MiB over the first few hundred verdicts, so a session
  is replaced after ``LLM_JUDGE_CCODE_SESSION_ITEMS`` verdicts. An idle session holds
  that memory and ~1% of a core, so it is closed after ``LLM_JUDGE_CCODE_SESSION_IDLE``.

Processes are handled as in one-shot mode: own process group, environment built from
scratch, killed as a group on timeout or cancellation, always reaped. And since a
session outlives any one call, each CLI gets ``PR_SET_PDEATHSIG`` (through ``setpriv``,
when installed): a worker killed outright (OOM killer, ``ray.kill``) takes its CLI
processes with it instead of leaving them waiting on the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import shutil
import signal
import time
from asyncio.subprocess import PIPE, Process
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import JudgeConfig
from ..errors import (
    BackendCallError,
    BackendTimeoutError,
    PermanentBackendError,
    TransientBackendError,
)
from ..prompt import JudgePrompt
from ..spec import BackendSpec
from .base import Completion
from .ccode import ClaudeCodeBackend
from .ccode_output import parse_cli_output
from .ccode_prompt import SessionKey, cli_env, cli_message, schema_arg, session_key
from .process import (
    MAX_STDERR_TAIL,
    MAX_STDOUT,
    REAP_S,
    Spawn,
    exited,
    read_bounded,
    signal_group,
    terminate_group,
)

__all__ = ["ClaudeCodeSessionBackend"]

logger = logging.getLogger(__name__)

_CLEAR = "/clear"
_CLEAR_TIMEOUT_S = 30.0  # a clear is local (~20-40 ms); far beyond that the CLI is sick
_RETIRE_S = 2.0  # a retired session gets this long to exit on stdin EOF, then is killed
_MIN_JANITOR_S = 0.5
_CLOSE_S = 5.0  # aclose waits this long for upkeep tasks of killed sessions
_MAX_NOISE = 2000  # non-JSON stdout kept for an error message


class _Broken(Exception):
    """The session cannot go on: its process ended, or it broke the protocol."""


class _Session:
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
        return f"_Session({self.id}, pid={self.proc.pid}, items={self.items})"

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
            raise _Broken(f"stopped reading its input ({exc})") from None
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
                raise _Broken(f"printed a line over {MAX_STDOUT} bytes") from None
            if not raw:
                raise _Broken("ended its output")
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            if isinstance(event, dict):
                return event, raw
            self.noise += raw
            del self.noise[:-_MAX_NOISE]


class ClaudeCodeSessionBackend(ClaudeCodeBackend):
    """Judges with long-lived Claude Code CLI processes, a fresh context per verdict.

    Args:
        spec: A ``ccode-*`` spec.
        config: as for :class:`ClaudeCodeBackend`, plus ``ccode_sessions`` (processes per
            backend; default this worker's share of ``max_in_flight_ccode``),
            ``ccode_session_items`` and ``ccode_session_idle_s``.
        environ, spawn, **kwargs: as for :class:`ClaudeCodeBackend`.

    Example:
        >>> backend = ClaudeCodeSessionBackend(BackendSpec.ccode(), JudgeConfig())
        >>> runner = JudgeRunner(backend)
        >>> verdicts = await asyncio.gather(*(runner.judge(r) for r in requests))
        >>> await backend.aclose()  # kills every session's process group
    """

    def __init__(self, spec: BackendSpec, config: JudgeConfig, *,
                 environ: Mapping[str, str] | None = None,
                 spawn: Spawn = asyncio.create_subprocess_exec, **kwargs: Any) -> None:
        super().__init__(spec, config, environ=environ, spawn=spawn, **kwargs)
        # A session outlives any one call: if the worker dies (SIGKILL, OOM killer), its
        # CLI processes must die too, and they run in sessions of their own that nothing
        # else signals. setpriv (util-linux) sets PR_SET_PDEATHSIG and execs the CLI in
        # place; preexec_fn could do it too, but is unsafe in a threaded Ray worker.
        setpriv = shutil.which("setpriv")
        self._exec_prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self.max_sessions = config.ccode_sessions_per_worker()
        self.max_items = config.ccode_session_items
        self.idle_s = config.ccode_session_idle_s
        self._idle: dict[_Session, None] = {}  # insertion order: least recently used first
        self._busy: set[_Session] = set()
        self._starting = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._janitor: asyncio.Task[None] | None = None
        #: processes started and verdicts served, for ``status`` and tests
        self.started = 0
        self.served = 0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.spec)!r}, model={self.model!r}, "
                f"sessions={len(self._idle) + len(self._busy)}/{self.max_sessions})")

    def session_argv(self, system: str, session_dir: Path,
                     schema: str | None = None) -> list[str]:
        """The one-shot command line with JSON lines on stdin and stdout."""
        argv = self.argv(system, session_dir, schema)
        at = argv.index("--output-format")
        argv[at + 1] = "stream-json"
        if "--verbose" not in argv:
            argv.append("--verbose")
        return [*argv[:at], "--input-format", "stream-json", *argv[at:]]

    @property
    def pids(self) -> list[int]:
        """Process ids of the sessions that are running now."""
        return sorted(s.proc.pid for s in (*self._idle, *self._busy) if s.alive)

    # -- one attempt -------------------------------------------------------------------

    async def complete(self, prompt: JudgePrompt, *, timeout: float) -> Completion:
        if self._closed:
            raise PermanentBackendError(f"{self!r} is closed", backend=str(self.spec))
        schema = schema_arg(prompt.schema, str(self.spec))
        message = cli_message(prompt, self.config.max_input_chars)
        if message.lstrip().startswith("/"):  # a session would run it as a command
            return await super().complete(prompt, timeout=timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        session = await self._acquire(session_key(prompt, schema), deadline, timeout)
        try:
            _, line = await session.turn(message, deadline)
        except asyncio.TimeoutError:
            await self._kill(session, terminate=True)
            raise BackendTimeoutError(
                f"claude gave no answer within {timeout:.1f}s; its session's process group "
                "was killed", backend=str(self.spec), exit_code=session.proc.returncode,
            ) from None
        except _Broken as exc:
            await self._kill(session)
            raise self._broken(session, str(exc)) from None
        except BaseException:  # cancelled: the caller is gone, and the turn is half done
            signal_group(session.proc, signal.SIGKILL)
            self._background(self._kill(session))  # reaped even though we may not wait
            raise
        finally:
            self._home.sync_credentials()
        session.items += 1
        self.served += 1
        self._after_item(session)
        context = {"backend": str(self.spec), "exit_code": None, "stderr": None}
        outcome = parse_cli_output(line.decode("utf-8", "replace"), model=self.model,
                                   now=time.time(), context=context, scrub=self._scrub,
                                   schema=session.schema)
        if isinstance(outcome, BackendCallError):
            raise outcome
        return outcome

    def _broken(self, session: _Session, what: str) -> BackendCallError:
        code = session.proc.returncode
        stderr = self._scrub(_done_text(session.stderr) or session.noise.decode(
            "utf-8", "replace")).strip()
        how = f"was killed by signal {-code}" if code is not None and code < 0 else (
            f"exited with code {code}" if code is not None else "misbehaved")
        # "Error: --json-schema is not a valid JSON Schema: ...": the same every time
        error = PermanentBackendError if "--json-schema" in stderr else TransientBackendError
        return error(
            f"claude session {how}: it {what}; stderr: {stderr[-500:] or '(empty)'}",
            backend=str(self.spec), exit_code=code, stderr=stderr or None)

    # -- the pool ----------------------------------------------------------------------

    async def _acquire(self, key: SessionKey, deadline: float, timeout: float) -> _Session:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise PermanentBackendError(f"{self!r} is closed", backend=str(self.spec))
            for session in reversed(list(self._idle)):  # the most recently used first
                if session.key != key:
                    continue
                del self._idle[session]
                if session.alive:
                    self._busy.add(session)
                    return session
                self._background(self._kill(session))  # died while idle
            if len(self._idle) + len(self._busy) + self._starting >= self.max_sessions and \
                    self._idle:
                # Full, with an idle session for another key: it makes room.
                oldest = next(iter(self._idle))
                del self._idle[oldest]
                self._background(self._retire(oldest))
            if len(self._idle) + len(self._busy) + self._starting < self.max_sessions:
                return await self._start(key)
            remaining = deadline - loop.time()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, remaining))
            except asyncio.TimeoutError:
                raise BackendTimeoutError(
                    f"no claude session came free within {timeout:.1f}s "
                    f"({self.max_sessions} per worker, all busy)", backend=str(self.spec),
                ) from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def _start(self, key: SessionKey) -> _Session:
        system, schema, max_tokens = key
        self._starting += 1
        session_dir = self._home.call_dir()
        try:
            env = {**self._home.env, **cli_env(max_tokens),
                   "CLAUDE_CODE_TMPDIR": str(session_dir), "TMPDIR": str(session_dir)}
            try:
                proc = await self._spawn(
                    *self._exec_prefix, *self.session_argv(system, session_dir, schema),
                    stdin=PIPE, stdout=PIPE,
                    stderr=PIPE, cwd=self._home.cwd, env=env, start_new_session=True,
                    limit=MAX_STDOUT)
            except OSError as exc:
                broken = exc.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC)
                error = PermanentBackendError if broken else TransientBackendError
                raise error(f"cannot start {self.cli}: {exc}", backend=str(self.spec)) from None
        except BaseException:
            shutil.rmtree(session_dir, ignore_errors=True)
            self._starting -= 1
            self._wake()
            raise
        self._starting -= 1
        session = _Session(proc, key, session_dir)
        self._busy.add(session)
        self.started += 1
        if self._closed:  # aclose ran while the process was starting
            await self._kill(session)
            raise PermanentBackendError(f"{self!r} is closed", backend=str(self.spec))
        logger.debug("claude session %d started (pid %d)", session.id, proc.pid)
        return session

    def _after_item(self, session: _Session) -> None:
        if session.items >= self.max_items or self._closed:
            self._busy.discard(session)
            self._background(self._retire(session))
        else:
            self._background(self._clear(session))

    async def _clear(self, session: _Session) -> None:
        deadline = asyncio.get_running_loop().time() + _CLEAR_TIMEOUT_S
        try:
            seen, line = await session.turn(_CLEAR, deadline)
            result = json.loads(line)
            if "conversation_reset" not in seen or result.get("is_error") is not False:
                raise _Broken(f"did not confirm {_CLEAR} (events {sorted(seen)})")
        except (asyncio.TimeoutError, _Broken) as exc:
            # Never reuse a context that may still hold the last item: replace the process.
            if not self._closed:  # (aclose kills sessions mid-clear on purpose)
                logger.warning("claude session %d could not clear its context (%s); "
                               "replacing it", session.id, exc or "timeout")
            await self._kill(session, terminate=True)
            return
        except BaseException:
            signal_group(session.proc, signal.SIGKILL)
            raise
        self._busy.discard(session)
        if self._closed:
            await self._retire(session)
            return
        session.idle_since = time.monotonic()
        self._idle[session] = None
        self._wake()
        if self.idle_s > 0 and (self._janitor is None or self._janitor.done()):
            self._janitor = asyncio.ensure_future(self._close_idle())

    async def _close_idle(self) -> None:
        """Close sessions unused for ``idle_s``: an idle CLI still spends CPU and memory."""
        while self._idle and not self._closed:
            await asyncio.sleep(max(_MIN_JANITOR_S, self.idle_s / 4))
            now = time.monotonic()
            for session in list(self._idle):
                if now - session.idle_since >= self.idle_s:
                    del self._idle[session]
                    self._background(self._retire(session))

    async def _retire(self, session: _Session) -> None:
        """End a healthy session politely: EOF on its input, then the group if need be."""
        self._busy.discard(session)
        assert session.proc.stdin is not None
        with contextlib.suppress(Exception):
            session.proc.stdin.close()
        try:
            await asyncio.wait_for(exited(session.proc), _RETIRE_S)
        except asyncio.TimeoutError:
            await terminate_group(session.proc)
        finally:
            await self._kill(session)
        logger.debug("claude session %d retired after %d verdicts", session.id, session.items)

    async def _kill(self, session: _Session, *, terminate: bool = False) -> None:
        """Kill the session's process group, reap it, release its pipes and directory."""
        self._busy.discard(session)
        self._idle.pop(session, None)
        if terminate:
            await terminate_group(session.proc)
        signal_group(session.proc, signal.SIGKILL)  # also strays the leader left behind
        if not session.disposed:
            session.disposed = True
            try:
                await asyncio.wait_for(exited(session.proc), REAP_S)
            except asyncio.TimeoutError:
                logger.error("claude process %d survived SIGKILL for %.0fs", session.proc.pid,
                             REAP_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(session.stderr), REAP_S)
            session.stderr.cancel()
            assert session.proc.stdin is not None
            with contextlib.suppress(Exception):
                session.proc.stdin.close()
            shutil.rmtree(session.call_dir, ignore_errors=True)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("claude session upkeep failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """Kill every session and one-shot process, reap them, remove the private tree."""
        self._closed = True
        self._wake()
        if self._janitor is not None:
            self._janitor.cancel()
        sessions = [*self._idle, *self._busy]
        for session in sessions:
            signal_group(session.proc, signal.SIGKILL)
        # Clears and retirements see their process die and reap it; let them finish.
        await asyncio.gather(*(self._kill(s) for s in sessions), return_exceptions=True)
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=_CLOSE_S)
            for task in late:
                task.cancel()
        await super().aclose()


def _done_text(task: asyncio.Future[bytes]) -> str:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result().decode("utf-8", "replace")
    return ""
