"""The fake provider's server: its state, its aiohttp app on a daemon thread, model calls.

What goes on the wire is ``_wire``'s (each API's bodies) and ``responses``' (how aiohttp
sends them); the ``/_fake/*`` routes are ``control``'s. See :mod:`ray_judge.testing.fake_llm`
for the whole picture and the command line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from . import _wire
from .behaviour import Behaviour, RecordedRequest
from .control import ControlAPI
from .latency import Latency
from .prompt_cache import PromptCaches
from .responses import (
    JSON,
    drop_connection,
    error,
    json_response,
    send_stream,
    structured,
)

__all__ = ["FakeLLMServer"]

logger = logging.getLogger(__name__)


class FakeLLMServer:
    """The fake provider, serving from its own event loop in a daemon thread.

    Args:
        host: interface to bind; keep the default, tests must stay on loopback.
        port: 0 picks a free port (read it from :attr:`port` / :attr:`url`).
        latency_s: added before every model call's answer.
        tail_p / tail_s / seed: a seeded heavy tail: with probability ``tail_p`` a call
            takes ``tail_s`` more (:class:`~.latency.Latency`).
        reply: computes the answer text from the request body whenever the behaviour in
            effect is the plain default answer (benchmarks, cache tests).
        max_recorded: the newest requests kept in :attr:`requests`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency_s: float = 0.0,
                 reply: Callable[[dict[str, Any]], str] | None = None,
                 max_recorded: int = 10_000, tail_p: float = 0.0, tail_s: float = 0.0,
                 seed: int = 0) -> None:
        self.host = host
        self.latency = Latency(latency_s, tail_p=tail_p, tail_s=tail_s, seed=seed)
        self.reply = reply
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._default = Behaviour()
        self._records: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._model_calls = 0
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._hangs: set[asyncio.Future[None]] = set()
        self._start_error: BaseException | None = None
        #: the providers' prompt caches (Anthropic's breakpoints, OpenAI's automatic one)
        self.prompt_cache = PromptCaches()

    # -- public control --------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeLLMServer is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def default(self) -> Behaviour:
        return self._default

    @default.setter
    def default(self, behaviour: Behaviour) -> None:
        if not isinstance(behaviour, Behaviour):
            raise TypeError(f"default must be a Behaviour, got {type(behaviour).__name__}")
        with self._lock:
            self._default = behaviour

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first (control routes excluded)."""
        with self._lock:
            return list(self._records)

    @property
    def latency_s(self) -> float:
        return self.latency.base_s

    @latency_s.setter
    def latency_s(self, seconds: float) -> None:
        self.latency.base_s = seconds

    @property
    def abandoned(self) -> int:
        """Model calls whose client closed the connection before the answer (a hedge's
        loser, a caller's timeout)."""
        return self.latency.abandoned

    def slow(self, marker: str, delay_s: float, times: int = 1) -> None:
        """The next ``times`` calls whose body contains ``marker`` take ``delay_s`` more."""
        self.latency.slow(marker, delay_s, times)

    @property
    def model_calls(self) -> int:
        """Model calls answered or in progress since the last :meth:`reset`."""
        return self._model_calls

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        return len(self._script)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours: the next model calls get these, one each, then :attr:`default`."""
        for b in behaviours:
            if not isinstance(b, Behaviour):
                raise TypeError(f"script() takes Behaviour values, got {type(b).__name__}")
        with self._lock:
            self._script.extend(behaviours)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._records.clear()

    def reset(self) -> None:
        """Forget requests, the script, the call count and the prompt caches; the default
        answers again."""
        with self._lock:
            self._records.clear()
            self._script.clear()
            self._default = Behaviour()
            self._model_calls = 0
        self.latency.reset()
        self.prompt_cache.clear()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Start serving; returns once the port is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer already started")
        _raise_fd_limit()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="fake-llm-server")
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"fake LLM server failed to start on {self.host}:"
                               f"{self._requested_port}: {self._start_error}"
                               ) from self._start_error
        return self

    def stop(self) -> None:
        """Stop serving: pending hangs end, connections close. Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = None
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"FakeLLMServer({where}, model_calls={self._model_calls})"

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._start_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/chat/completions", self._openai)
        app.router.add_get("/", self._root)  # and HEAD: the Claude Code CLI's warm-up
        ControlAPI(self).add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a hanging handler ends when its client goes away.
        # A short shutdown_timeout: stop() must not wait for long delays to run out.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.5)
        await runner.setup()
        # A deep backlog: thousands of clients connecting at once must not see SYN drops.
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=4096,
                           reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def _shutdown(self) -> None:
        for fut in list(self._hangs):
            fut.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- model calls -----------------------------------------------------------------

    def _record(self, request: web.Request, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        rec = RecordedRequest(request.method, request.path, dict(request.query), headers, body,
                              time.time())
        with self._lock:
            self._records.append(rec)

    def _next(self) -> Behaviour:
        with self._lock:
            self._model_calls += 1
            return self._script.popleft() if self._script else self._default

    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._model_call(request, _wire.ANTHROPIC)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._model_call(request, _wire.OPENAI)

    async def _model_call(self, request: web.Request, fmt: str) -> web.StreamResponse:
        body = await self._body(request)
        self._record(request, body)
        if body is None:
            return error(fmt, 400, "request body must be a JSON object")
        behaviour = self._next()
        await self._wait(self.latency.of(body) + behaviour.delay_s)
        if behaviour.hang:
            await self._hang()
        if behaviour.drop:
            return drop_connection(request)
        headers = {"request-id": f"req_fake_{next(self._ids)}", **behaviour.headers}
        if behaviour.body is not None:
            headers.setdefault("content-type", JSON)
            return web.Response(status=behaviour.status, text=behaviour.body, headers=headers)
        if behaviour.status >= 400:
            return error(fmt, behaviour.status, behaviour.text, headers)
        ident = f"fake{next(self._ids)}"
        streamed = body.get("stream") is True
        if behaviour.malformed:
            if streamed:
                return await send_stream(request, _wire.malformed_stream(fmt, body, ident),
                                         behaviour.status, headers)
            return json_response(_wire.malformed_message(fmt), behaviour.status, headers)
        text = behaviour.text
        if self.reply is not None and behaviour._plain_default:
            try:
                text = self.reply(body)
            except Exception as exc:  # a broken reply hook must show up in the test
                logger.exception("fake LLM reply hook failed")
                return error(fmt, 500, f"reply hook failed: {exc!r}", headers)
        text, tool_call = structured(fmt, body, behaviour, text)
        if streamed:
            return await send_stream(
                request, _wire.stream(fmt, body, text, ident, tool_call,
                                      caches=self.prompt_cache),
                behaviour.status, headers)
        payload = _wire.message(fmt, body, text, ident, tool_call,
                                caches=self.prompt_cache)
        if behaviour.cut or behaviour.stall:
            return await self._half_body(request, payload, behaviour, headers)
        return json_response(payload, behaviour.status, headers)

    async def _wait(self, delay: float) -> None:
        if delay <= 0:
            return
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:  # handler_cancellation: the client left
            self.latency.left()
            raise

    async def _half_body(self, request: web.Request, payload: bytes, behaviour: Behaviour,
                         headers: Mapping[str, str]) -> web.StreamResponse:
        # The headers promise the whole body; half of it arrives, then a reset or silence.
        response = web.StreamResponse(status=behaviour.status, headers={
            "content-type": JSON, **headers, "content-length": str(len(payload))})
        await response.prepare(request)
        await response.write(payload[:len(payload) // 2])
        if behaviour.stall:
            await self._hang()
        if request.transport is not None:
            request.transport.close()
        return response

    async def _hang(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hangs.add(fut)
        try:
            await fut  # cancelled by stop(), or with the handler when the client leaves
        finally:
            self._hangs.discard(fut)

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self._record(request, body)
        if body is None:
            return error(_wire.ANTHROPIC, 400, "request body must be a JSON object")
        return json_response(_wire.count_tokens(body))

    async def _root(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None)
        return web.Response(text="ok")

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self._record(request, await self._body(request))
        return json_response(json.dumps({"error": {"type": "not_found_error", "message":
                                         f"no route {request.method} {request.path}"}}).encode(),
                             404)


def _raise_fd_limit() -> None:
    # Thousands of concurrent connections need as many descriptors; the soft limit is
    # often 1024 while the hard limit allows far more.
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError):
            logger.debug("could not raise RLIMIT_NOFILE to %d", want)
