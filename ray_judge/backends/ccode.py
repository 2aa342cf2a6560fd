"""The Claude Code CLI backend (``ccode-*``): one ``claude -p`` process per attempt.

Per attempt the backend runs, never through a shell::

    claude -p --output-format json --model <full id> --system-prompt <rubric> \\
        --tools "" --max-turns 1 --no-session-persistence --safe-mode

with the user message on stdin, in its own process group, from an empty private
directory, with an environment built from scratch (:mod:`.ccode_env`). Why each flag,
as measured with CLI 2.1.332 against a fake Messages API on 127.0.0.1:

* ``--tools ""`` makes the request carry ``"tools": []``: the judge cannot run anything,
  whatever the graded response tells it to do (without it: 12 tools, Bash among them).
* ``--system-prompt`` replaces the CLI's ~28,000-character coding-agent prompt; the CLI
  still prepends a billing line and one sentence of its own.
* stdin, not argv: an argument over 128 KiB fails with E2BIG, and a stdin left open
  costs a fixed 3 s wait. A rubric that large goes through ``--system-prompt-file``.
* ``--max-turns 1``: a model that asks for a tool anyway ends with ``error_max_turns``.
* ``--safe-mode``: without it the CLI still pastes every ``CLAUDE.md`` from the working
  directory up to ``/`` into the user message as instructions that "OVERRIDE any default
  behavior", so anyone who can write ``/tmp/CLAUDE.md`` (a policy running code on the
  node, say) could grade every rollout. Safe mode drops those, hooks, MCP servers and
  plugins, and keeps the user's login (unlike ``--bare``).
* The CLI exits 143 about 0.1 s after SIGTERM and prints nothing, so a killed process is
  a timeout, not a parse error. It starts no child processes of its own in this mode.

A prompt's later turns, JSON schema and ``max_tokens`` are mapped by :mod:`.ccode_prompt`
(one user message; ``--json-schema``, which offers the model only the CLI's internal
``StructuredOutput`` tool, with ``--output-format stream-json --verbose`` so that a text
answer can be read too; ``CLAUDE_CODE_MAX_OUTPUT_TOKENS``).

Example:
    >>> backend = ClaudeCodeBackend(BackendSpec.ccode("ccode-4-sonnet"), JudgeConfig())
    >>> verdict = await JudgeRunner(backend).judge(JudgeRequest(prompt="2+2?", response="4"))
    >>> await backend.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import time
from asyncio.subprocess import PIPE, Process
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import JudgeConfig, is_secret_name
from ..errors import (
    BackendCallError,
    BackendTimeoutError,
    PermanentBackendError,
    TransientBackendError,
)
from ..prompt import JudgePrompt
from ..spec import BackendSpec
from .base import Backend, Completion
from .ccode_env import CliHome, resolve_cli
from .ccode_output import parse_cli_output
from .ccode_prompt import MAX_ARG_BYTES, cli_env, cli_message, schema_arg
from .process import (
    MAX_STDERR_TAIL,
    MAX_STDOUT,
    REAP_S,
    Spawn,
    exited,
    feed,
    read_bounded,
    settle,
    signal_group,
    terminate_group,
)

__all__ = ["ClaudeCodeBackend"]

logger = logging.getLogger(__name__)

_SECRETS = re.compile(
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_\-]{30,}")


class ClaudeCodeBackend(Backend):
    """Judges with the Claude Code CLI (``CLAUDE_CLI_PATH``), under the user's own login.

    Args:
        spec: A ``ccode-*`` spec; ``config.ccode_models`` maps it to the ``--model`` id.
        config: ``claude_cli_path`` (``CLAUDE_CLI_PATH``), timeouts and retries.
        environ: The environment to build the CLI's from (default ``os.environ``).
        spawn: Starts the process (default ``asyncio.create_subprocess_exec``).
        **kwargs: ``rubric``, ``sleep``, ``clock``, ``rng``, as for :class:`Backend`.

    Raises:
        BackendUnavailableError: at construction, when ``CLAUDE_CLI_PATH`` is missing or
            not executable.
    """

    kind = "ccode"

    def __init__(self, spec: BackendSpec, config: JudgeConfig, *,
                 environ: Mapping[str, str] | None = None,
                 spawn: Spawn = asyncio.create_subprocess_exec, **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        environ = dict(os.environ if environ is None else environ)
        self.cli = resolve_cli(self.config.claude_cli_path, environ, str(spec))
        self._spawn = spawn
        # The CLI runs in a session of its own (so a timeout can kill its whole group), so
        # nothing signals it if the worker dies outright (SIGKILL, OOM killer): it would
        # wait on the provider for minutes at ~250 MiB. setpriv (util-linux) sets
        # PR_SET_PDEATHSIG and execs the CLI in place; preexec_fn could do it too, but is
        # unsafe in a threaded Ray worker.
        setpriv = shutil.which("setpriv")
        self._exec_prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self._home = CliHome(environ)
        self._live: set[Process] = set()
        self._closed = False

    @property
    def env(self) -> dict[str, str]:
        """The environment each CLI process gets (``CLAUDE_CODE_TMPDIR`` set per call)."""
        return dict(self._home.env)

    def argv(self, system: str, call_dir: Path, schema: str | None = None) -> list[str]:
        """The CLI's command line for one attempt; ``schema`` from :func:`.schema_arg`.

        With a schema the output is ``stream-json``: its ``assistant`` events hold the
        model's text when it answered without the structured-output tool.
        """
        if len(system.encode()) <= MAX_ARG_BYTES:
            system_args = ["--system-prompt", system]
        else:
            system_file = call_dir / "system-prompt.txt"
            system_file.write_text(system, encoding="utf-8")
            system_args = ["--system-prompt-file", str(system_file)]
        output = ["json"] if schema is None else ["stream-json", "--verbose"]
        schema_args = [] if schema is None else ["--json-schema", schema]
        return [self.cli, "-p", "--output-format", *output, "--model", self.model,
                *system_args, "--tools", "", "--max-turns", "1", "--no-session-persistence",
                "--safe-mode", *schema_args]

    async def complete(self, prompt: JudgePrompt, *, timeout: float) -> Completion:
        if self._closed:
            raise PermanentBackendError(f"{self!r} is closed", backend=str(self.spec))
        # Before the spawn: a failure here must leave no process.
        schema = schema_arg(prompt.schema, str(self.spec))
        stdin = cli_message(prompt, self.config.max_input_chars).encode()
        call_dir = self._home.call_dir()
        try:
            env = {**self._home.env, **cli_env(prompt.max_tokens),
                   "CLAUDE_CODE_TMPDIR": str(call_dir), "TMPDIR": str(call_dir)}
            try:
                proc = await self._spawn(
                    *self._exec_prefix, *self.argv(prompt.system, call_dir, schema), stdin=PIPE,
                    stdout=PIPE, stderr=PIPE, cwd=self._home.cwd, env=env,
                    start_new_session=True)
            except OSError as exc:
                broken = exc.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC)
                error = PermanentBackendError if broken else TransientBackendError
                raise error(f"cannot start {self.cli}: {exc}", backend=str(self.spec)) from None
            self._live.add(proc)
            try:
                return await self._run(proc, stdin, timeout, schema=schema is not None)
            finally:
                self._live.discard(proc)
        finally:
            shutil.rmtree(call_dir, ignore_errors=True)
            self._home.sync_credentials()

    async def _run(self, proc: Process, stdin: bytes, timeout: float, *,
                   schema: bool = False) -> Completion:
        assert proc.stdin and proc.stdout and proc.stderr
        io = asyncio.gather(feed(proc.stdin, stdin), read_bounded(proc.stdout, MAX_STDOUT),
                            read_bounded(proc.stderr, MAX_STDERR_TAIL, tail=True))
        try:
            await asyncio.wait_for(exited(proc), timeout)
        except asyncio.TimeoutError:
            await terminate_group(proc)
            await settle(io)
            raise BackendTimeoutError(
                f"claude gave no answer within {timeout:.1f}s; its process group was killed",
                backend=str(self.spec), exit_code=proc.returncode) from None
        except BaseException:  # cancelled: the caller is gone, so is the process
            signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(exited(proc), REAP_S)
            await settle(io)
            raise
        # The CLI has exited; anything left in its group is a stray holding our pipes.
        signal_group(proc, signal.SIGKILL)
        try:
            _, out, err = await asyncio.wait_for(io, REAP_S)
        except asyncio.TimeoutError:  # a stray that left the group still holds a pipe
            raise TransientBackendError(
                f"claude exited ({proc.returncode}) but its output never ended",
                backend=str(self.spec), exit_code=proc.returncode) from None
        return self._completion(proc.returncode, out, err, schema=schema)

    def _completion(self, code: int | None, out: bytes, err: bytes, *,
                    schema: bool = False) -> Completion:
        stdout = out.decode("utf-8", "replace")
        stderr = self._scrub(err.decode("utf-8", "replace").strip())
        context = {"backend": str(self.spec), "exit_code": code, "stderr": stderr or None}
        if not stdout.strip():
            how = f"was killed by signal {-code}" if code is not None and code < 0 else (
                f"exited with code {code}")
            # "Error: --json-schema is not a valid JSON Schema: ...": the same every time
            error = PermanentBackendError if "--json-schema" in stderr else (
                TransientBackendError)
            raise error(f"claude {how} and printed nothing; stderr: {stderr or '(empty)'}",
                        **context)
        outcome = parse_cli_output(stdout, model=self.model, now=time.time(), context=context,
                                   scrub=self._scrub, schema=schema)
        if isinstance(outcome, BackendCallError):
            raise outcome
        return outcome

    def _scrub(self, text: str) -> str:
        for name, value in self._home.env.items():
            if len(value) >= 8 and is_secret_name(name):
                text = text.replace(value, "***")
        return _SECRETS.sub(lambda m: f"{m[1]} ***" if m[1] else "***", text)

    async def aclose(self) -> None:
        """Kill every CLI process still running and remove the private directory."""
        self._closed = True
        live, self._live = list(self._live), set()
        for proc in live:
            signal_group(proc, signal.SIGKILL)
        for proc in live:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(exited(proc), REAP_S)
        self._home.cleanup()
