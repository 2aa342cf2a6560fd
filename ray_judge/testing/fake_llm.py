"""A fake LLM provider on 127.0.0.1, for tests and benchmarks that must not reach a network.

It speaks the Anthropic Messages API (``POST /v1/messages``, streamed or not, and
``/v1/messages/count_tokens``) and OpenAI chat completions (``POST /v1/chat/completions``),
answers ``HEAD /`` (the Claude Code CLI's warm-up), and records every request. What the
next model calls get is scripted with :class:`Behaviour` values: an answer, structured
output, an error in the provider's own format, a subscription usage limit, a hang, a
dropped connection or a malformed body.

Example:
    >>> with FakeLLMServer(latency_s=0.05) as server:
    ...     server.script(Behaviour.error(429, retry_after=2), Behaviour.ok("SCORE: 9"))
    ...     # point the client at server.url, e.g. OPENAI_API_BASE=f"{server.url}/v1"

Run as a process (benchmarks, end-to-end tests)::

    python -m ray_judge.testing.fake_llm --port 0 --latency 0.05
    # prints "READY http://127.0.0.1:PORT", serves until SIGTERM/SIGINT; control it with
    # POST /_fake/script, POST /_fake/default, GET /_fake/requests, POST /_fake/reset
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .behaviour import DEFAULT_TEXT, STRUCTURED_OUTPUT_TOOL, Behaviour, RecordedRequest
from .server import FakeLLMServer

__all__ = ["DEFAULT_TEXT", "STRUCTURED_OUTPUT_TOOL", "Behaviour", "FakeLLMServer",
           "RecordedRequest", "main"]

def __getattr__(name: str) -> Any:
    # FakeLLMProcess lives in .process (it imports this module); offer it here too.
    if name == "FakeLLMProcess":
        from .process import FakeLLMProcess

        return FakeLLMProcess
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _wait_for_eof(stop: threading.Event) -> None:
    # os.read on the raw descriptor: a daemon thread blocked inside sys.stdin's buffered
    # reader makes the interpreter abort at exit.
    while os.read(0, 4096):
        pass
    stop.set()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, after printing ``READY <url>`` on stdout."""
    parser = argparse.ArgumentParser(prog="python -m ray_judge.testing.fake_llm",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per model call")
    parser.add_argument("--tail-p", type=float, default=0.0,
                        help="probability that a call takes --tail-s more (seeded)")
    parser.add_argument("--tail-s", type=float, default=0.0, help="seconds the tail adds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tail's draws")
    parser.add_argument("--max-recorded", type=int, default=10_000)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when stdin closes (the parent died); FakeLLMProcess sets it")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_on_stdin_eof:
        threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True,
                         name="stdin-watch").start()
    server = FakeLLMServer(args.host, args.port, latency_s=args.latency,
                           max_recorded=args.max_recorded, tail_p=args.tail_p,
                           tail_s=args.tail_s, seed=args.seed).start()
    print(f"READY {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
