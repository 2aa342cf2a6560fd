"""What the tests of the Claude Code backend share: the real CLI's marker, a trap for
anything it tries to reach beyond 127.0.0.1, and readers of the fake's request log and
of /proc."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from ray_judge.testing.fake_llm import FakeLLMServer
from tests.cli_support import CLI, proc_stats

API_KEY = "sk-ant-api03-test-dummy-key-0000"
OAUTH_TOKEN = "sk-ant-oat01-test-dummy-token-0000"

real_cli = pytest.mark.skipif(
    CLI is None, reason="the Claude Code CLI is not installed: set CLAUDE_CLI_PATH or run "
    "npm install --prefix .ci/node @anthropic-ai/claude-code@2.1.332")


class OutsideTrap:
    """An HTTP(S) proxy on 127.0.0.1 that refuses and records every request sent to it.

    The real CLI gets it as its proxy (with NO_PROXY=127.0.0.1), so anything it tries to
    reach beyond the fake server (telemetry, updates, OAuth) shows up in :attr:`seen`.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(500).split(b"\r\n")[0].decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass


def model_calls(fake: FakeLLMServer) -> list:
    return [r for r in fake.requests if r.path == "/v1/messages"]


def texts(blocks) -> str:
    if isinstance(blocks, str):
        return blocks
    return "\n".join(b.get("text", "") for b in blocks)


def user_text(request) -> str:
    return "\n".join(texts(m["content"]) for m in request.body["messages"]
                     if m["role"] == "user")


def alive_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (from /proc)."""
    return [pid for pid, state, _, group in proc_stats() if group == pgid and state not in "ZX"]


def zombie_children() -> list[int]:
    return [pid for pid, state, ppid, _ in proc_stats() if ppid == os.getpid() and state == "Z"]


def assert_group_gone(pgid: int) -> None:
    assert alive_in_group(pgid) == []
    deadline = time.monotonic() + 5  # a reparented grandchild waits for init to reap it
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"process group {pgid} still exists")
    assert zombie_children() == []


def recording_spawn(pids: list[int]):
    async def spawn(*argv, **kwargs):
        proc = await asyncio.create_subprocess_exec(*argv, **kwargs)
        pids.append(proc.pid)
        return proc
    return spawn
