"""The fake LLM provider in its own process, for benchmarks and end-to-end tests.

A separate process keeps the server's event loop off the cores and the GIL of the code
under test, and lets Ray workers or a ``claude`` subprocess reach it by URL alone.

Example:
    >>> with FakeLLMProcess(latency_s=0.05) as fake:
    ...     fake.script(Behaviour.error(503))
    ...     run_benchmark(base_url=fake.url)
    ...     assert len(fake.requests()) > 0
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from .behaviour import Behaviour, RecordedRequest

__all__ = ["FakeLLMProcess"]

# Control calls go to 127.0.0.1 only: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeLLMProcess:
    """``python -m ray_judge.testing.fake_llm`` as a child process, with a Python handle.

    Args:
        latency_s: added before every model call's answer.
        port: 0 picks a free port.
        env: the child's environment (default: this process's).
        startup_timeout_s: how long to wait for the ``READY`` line.
    """

    def __init__(self, *, latency_s: float = 0.0, port: int = 0, host: str = "127.0.0.1",
                 env: Mapping[str, str] | None = None, startup_timeout_s: float = 30.0,
                 tail_p: float = 0.0, tail_s: float = 0.0, seed: int = 0) -> None:
        self.latency_s = latency_s
        self.tail = (tail_p, tail_s, seed)
        self.host = host
        self._port_arg = port
        self._env = dict(os.environ if env is None else env)
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> FakeLLMProcess:
        """Spawn the server and wait for its ``READY <url>`` line."""
        if self._proc is not None:
            raise RuntimeError("FakeLLMProcess already started")
        argv = [sys.executable, "-m", "ray_judge.testing.fake_llm", "--host", self.host,
                "--port", str(self._port_arg), "--latency", str(self.latency_s),
                "--tail-p", str(self.tail[0]), "--tail-s", str(self.tail[1]),
                "--seed", str(self.tail[2]), "--exit-on-stdin-eof"]
        # stdin is a pipe only we hold: if this process dies, the child sees EOF and exits.
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=self._env, start_new_session=True)
        try:
            line = self._read_ready()
        except BaseException:
            self.stop()
            raise
        self.url = line.split(" ", 1)[1]
        return self

    def _read_ready(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self._startup_timeout_s
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"fake LLM server gave no READY line within "
                                   f"{self._startup_timeout_s:g}s (got {buf!r})")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self._proc.wait(timeout=5)
                    raise RuntimeError(f"fake LLM server exited with code {code} before READY "
                                       f"(stdout {buf!r}; its stderr is above)")
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode().strip()
        if not line.startswith("READY http"):
            raise RuntimeError(f"unexpected first line from fake LLM server: {line!r}")
        return line

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; always reaps. Returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        return proc.returncode

    def __enter__(self) -> FakeLLMProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeLLMProcess({self.url or 'not started'}, pid={self.pid})"

    # -- control API -------------------------------------------------------------------

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        if not self.url:
            raise RuntimeError("FakeLLMProcess is not started")
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(  # noqa: S310 - always our own http:// URL
            f"{self.url}{path}", data=data, method=method,
            headers={"content-type": "application/json"})
        with _OPENER.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours: the next model calls get these, one each, then the default."""
        self._call("POST", "/_fake/script", [b.to_dict() for b in behaviours])

    def set_default(self, behaviour: Behaviour) -> None:
        self._call("POST", "/_fake/default", behaviour.to_dict())

    def requests(self) -> list[RecordedRequest]:
        return [RecordedRequest.from_dict(d) for d in self._call("GET", "/_fake/requests")]

    def model_calls(self) -> int:
        return int(self._call("GET", "/_fake/stats")["model_calls"])

    def stats(self) -> dict[str, int]:
        """Model calls, scripted behaviours pending, calls abandoned by their client, and
        calls that drew the latency tail."""
        return dict(self._call("GET", "/_fake/stats"))

    def slow(self, marker: str, delay_s: float, times: int = 1) -> None:
        """The next ``times`` calls whose body contains ``marker`` take ``delay_s`` more."""
        self._call("POST", "/_fake/slow", {"marker": marker, "delay_s": delay_s,
                                           "times": times})

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})
