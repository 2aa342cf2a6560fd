"""The lean transport's HTTP side: one aiohttp session, one POST, the answer's few fields.

Nothing here knows LiteLLM: :mod:`.litellm_route` decides what to send (URL, headers,
body) and :mod:`.litellm_errors` what a failure means; this module sends bytes and reads
back the status, the headers and the body, and pulls text, model and token counts out of
a good answer in each wire format (:data:`PARSERS`).

One :class:`HttpTransport` serves one backend in one worker process: its session is
created on the first call, on the worker's event loop, with as many connections as the
pool lets calls be in flight (``LLM_JUDGE_MAX_IN_FLIGHT_LITELLM``), kept alive between
calls; :meth:`HttpTransport.aclose` closes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["PARSERS", "Answer", "HttpTransport", "NetworkError", "Reply", "lower",
           "proxy_for"]

logger = logging.getLogger(__name__)

#: Idle keep-alive connections live this long (seconds); a busy pool reuses them at once.
_KEEPALIVE_S = 30.0


class NetworkError(Exception):
    """No complete HTTP answer: refused, reset, dropped. ``cause`` is aiohttp's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer as it came: status, headers (case-insensitive), body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """What the judge keeps from a good answer."""

    text: Any  # str, or None when the model said nothing
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    #: the message itself (OpenAI) when it may hold reasoning in another field
    message: Mapping[str, Any] | None = None
    #: the provider's usage as sent, when prices need more than two token counts
    #: (cache reads and writes)
    usage: Mapping[str, Any] | None = None
    #: prompt-cache input tokens (part of ``input_tokens``), None when not reported
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None


class HttpTransport:
    """POSTs JSON bodies over one keep-alive ``aiohttp.ClientSession``.

    Args:
        limit: most connections open at once (the pool's in-flight limit for LiteLLM).
        ssl: TLS settings for https (an ``ssl.SSLContext``, or False: no verification).
    """

    def __init__(self, limit: int, ssl: Any = True) -> None:
        self.limit = max(1, int(limit))
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[str, str | None] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def __repr__(self) -> str:
        return f"HttpTransport(limit={self.limit}, open={self._session is not None})"

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session belongs to the loop it was made on; a worker has one loop for
            # life, a test that calls asyncio.run() twice gets a second session.
            connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit,
                                             keepalive_timeout=_KEEPALIVE_S)
            # No trust_env: it costs two thread hops per request (proxy and netrc lookups);
            # the proxy is looked up once per URL instead (proxy_for).
            self._session = aiohttp.ClientSession(connector=connector)
            self._loop = loop
        return self._session

    async def post(self, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> Reply:
        """One POST; raises TimeoutError past ``timeout`` s, NetworkError without an answer."""
        session = self._client()
        if url not in self._proxies:
            self._proxies[url] = proxy_for(url)
        limit = self._timeouts.get(timeout)
        if limit is None:
            if len(self._timeouts) > 64:  # attempts near a deadline get odd timeouts
                self._timeouts.clear()
            limit = self._timeouts[timeout] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with session.post(url, data=body, headers=headers, ssl=self._ssl,
                                    proxy=self._proxies[url], timeout=limit) as response:
                raw = await response.read()
                return Reply(response.status, response.headers, raw)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise NetworkError(exc) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                await session.close()
            except RuntimeError:  # its loop is gone (a test's asyncio.run): nothing to flush
                logger.debug("session of a finished event loop dropped")


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` by the environment's HTTP(S)_PROXY and NO_PROXY, as httpx
    (LiteLLM's client) reads them; None for a direct connection."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` as a plain dict with lower-case names (for the error path only)."""
    return {k.lower(): v for k, v in headers.items()}


def _tokens(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_openai(data: Any) -> Answer:
    """A chat completion: the first choice's content, the served model, the usage.

    No choices at all (``[]``) is an answer without text, as LiteLLM reads it; anything
    else unreadable raises (KeyError, IndexError, TypeError, AttributeError).
    """
    choices = data["choices"]
    if choices == []:
        text = message = None
    else:
        message = choices[0]["message"]
        text = message.get("content")
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details")
    cached = _tokens(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Answer(text, data.get("model"), _tokens(usage.get("prompt_tokens")),
                  _tokens(usage.get("completion_tokens")), message,
                  usage=usage if cached else None, cache_read_tokens=cached,
                  # OpenAI bills no cache writes: its prompt caching is automatic
                  cache_write_tokens=0 if cached is not None else None)


def parse_anthropic(data: Any) -> Answer:
    """A Messages answer: its text blocks joined; input tokens count cache reads and
    writes, as LiteLLM counts them.

    As strict as LiteLLM's reading: an ``error`` in place of the answer, or a missing
    ``content``, ``stop_reason``, ``usage`` or ``model``, or a block without ``type``
    raises (KeyError, TypeError, AttributeError), so the caller reports LiteLLM's error
    for it rather than an empty judgement.
    """
    if "error" in data:  # an error body in place of the answer
        raise KeyError("error")
    content, usage, model = data["content"], data["usage"], data["model"]
    if "stop_reason" not in data:
        raise KeyError("stop_reason")
    text = "".join(block["text"] for block in content if block["type"] == "text")
    usage = usage or {}
    tokens_in = _tokens(usage.get("input_tokens"))
    # LiteLLM reads a missing cache count as 0: so do we, so both paths agree
    write = _tokens(usage.get("cache_creation_input_tokens")) or 0
    read = _tokens(usage.get("cache_read_input_tokens")) or 0
    cached = write + read
    if tokens_in is not None:
        tokens_in += cached
    return Answer(text or None, model, tokens_in,
                  _tokens(usage.get("output_tokens")), usage=usage if cached else None,
                  cache_read_tokens=read, cache_write_tokens=write)


#: wire format -> parser of a good answer's JSON
PARSERS: Mapping[str, Callable[[Any], Answer]] = {
    "openai": parse_openai,
    "anthropic": parse_anthropic,
}


def loads(raw: bytes) -> Any:
    """The body as JSON (raises ValueError with json's own message when it is not)."""
    return json.loads(raw)
