"""The LiteLLM backend (``litellm:<model>``): one ``litellm.acompletion`` call per attempt.

Providers are configured the way LiteLLM users already do it, through LiteLLM's own
environment (``OPENAI_API_KEY``, ``OPENAI_API_BASE``, ``ANTHROPIC_API_KEY``,
``ANTHROPIC_API_BASE``, ``HOSTED_VLLM_API_BASE``, ...). LiteLLM's retries are switched
off: :class:`~ray_judge.judging.runner.JudgeRunner` retries politely and honours
Retry-After, LiteLLM does not.

LiteLLM's exceptions become ours in :mod:`.litellm_errors`, once, as picklable
:class:`~ray_judge.errors.BackendCallError` subclasses.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ..prompt import JudgePrompt
from .base import Backend, Completion
from .http_transport import PARSERS, HttpTransport, NetworkError, lower
from .litellm_errors import litellm_failure, translate_error, unreadable_answer
from .litellm_pricing import Pricing
from .litellm_route import Route, plan_route, shape_key, ssl_setting
from .prompt_cache import cache_messages, min_cache_tokens

__all__ = ["LiteLLMBackend", "load_litellm"]

_litellm: ModuleType | None = None
_import_lock = threading.Lock()


def load_litellm() -> ModuleType:
    """Import and set up litellm once per process (about 4 s of CPU the first time).

    Sets ``LITELLM_LOCAL_MODEL_COST_MAP`` (unless the user set it) so the import reads the
    bundled price list instead of fetching one: training nodes often have no egress, and
    a blocked fetch stalls the import. The only litellm global written is
    ``suppress_debug_info`` (its "Give Feedback / Get Help" banner on every error).
    """
    global _litellm  # noqa: PLW0603 - a process-wide cache is the point
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            _litellm = litellm
        return _litellm


async def _load_litellm_async() -> ModuleType:
    # The first import takes seconds: do it in a thread so the event loop keeps serving.
    return _litellm if _litellm is not None else await asyncio.to_thread(load_litellm)


class LiteLLMBackend(Backend):
    """Judges with any LiteLLM model, e.g. ``litellm:openai/gpt-4o``.

    Example:
        >>> backend = LiteLLMBackend(BackendSpec.parse("litellm:openai/gpt-4o"), config)
        >>> verdict = await JudgeRunner(backend).judge(JudgeRequest(p, r, reference=g))
    """

    kind = "litellm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = self.config.litellm_transport == "lean"
        self._http: HttpTransport | None = None
        self._routes: dict[Any, asyncio.Future[Route | None]] = {}
        self._prices: dict[tuple[str, str], Pricing] = {}
        #: the smallest prefix (tokens) worth a cache breakpoint; None: no breakpoints
        self._cache_min: int | None = None
        self._cache_known = not self.config.prompt_cache

    def _breakpoints(self, litellm: ModuleType) -> None:
        if not self._cache_known:  # LiteLLM's model lookups, once per backend
            self._cache_min = min_cache_tokens(litellm, self.model)
            self._cache_known = True

    async def prepare(self) -> None:
        litellm = await _load_litellm_async()
        self._breakpoints(litellm)
        if self._lean:  # plan the usual request shape now, not inside a timed attempt
            await self._route(litellm, self.request_kwargs(JudgePrompt("system", "user"), 60.0))

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def complete(self, prompt: JudgePrompt, *, timeout: float) -> Completion:
        litellm = await _load_litellm_async()
        self._breakpoints(litellm)
        kwargs = self.request_kwargs(prompt, timeout)
        if self._lean:
            route = await self._route(litellm, kwargs)
            if route is not None:
                return await self._complete_lean(litellm, route, kwargs, timeout)
        try:
            # litellm enforces ``timeout`` on the HTTP request; wait_for guards the rest.
            response = await asyncio.wait_for(
                litellm.acompletion(**kwargs), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise translate_error(exc, backend=str(self.spec), timeout=timeout) from exc
        return _completion(response, self.model, structured=prompt.schema is not None)

    async def _route(self, litellm: ModuleType, kwargs: dict[str, Any]) -> Route | None:
        """The lean route for this request's shape (planned once, shared); None: LiteLLM."""
        key = shape_key(kwargs)
        if key is None:
            return None
        planned = self._routes.get(key)
        if planned is None:  # LiteLLM's planning is synchronous and slow: off the loop
            planned = asyncio.ensure_future(asyncio.to_thread(plan_route, litellm, dict(kwargs)))
            self._routes[key] = planned
        return await asyncio.shield(planned)

    async def _complete_lean(self, litellm: ModuleType, route: Route, kwargs: dict[str, Any],
                             timeout: float) -> Completion:
        if self._http is None:
            self._http = HttpTransport(self.config.max_in_flight_litellm, ssl_setting(litellm))
        backend = str(self.spec)
        try:
            reply = await self._http.post(route.url, route.headers,
                                          route.body(kwargs["messages"]), timeout)
        except TimeoutError as exc:
            raise translate_error(exc, backend=backend, timeout=timeout) from None
        except NetworkError as exc:
            raise translate_error(litellm_failure(litellm, route, network=exc.cause),
                                  backend=backend, timeout=timeout) from None
        if reply.status >= 300:
            failure = litellm_failure(litellm, route, status=reply.status, headers=lower(
                reply.headers), text=reply.body.decode("utf-8", "replace"))
            raise translate_error(failure, backend=backend, timeout=timeout)
        try:
            data = json.loads(reply.body)
        except ValueError as exc:
            failure = litellm_failure(litellm, route, status=reply.status, headers=lower(
                reply.headers), text=reply.body.decode("utf-8", "replace"), bad_json=exc)
            raise translate_error(failure, backend=backend, timeout=timeout) from None
        try:
            answer = PARSERS[route.wire](data)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            failure = unreadable_answer(litellm, route, data, reply.headers) or exc
            raise translate_error(failure, backend=backend, timeout=timeout) from None
        text = answer.text
        message = answer.message
        if message is not None and (not isinstance(text, str) or text.startswith("<")
                                    or "reasoning_content" in message or "reasoning" in message):
            # LiteLLM moves a leading <think>...</think> (or a reasoning field) out of the text.
            text = _reasoning_utils().extract_reasoning_content(message)[1]
        prices = self._prices.get((route.provider, route.model))
        if prices is None:
            prices = self._prices[(route.provider, route.model)] = Pricing(litellm, route)
        return Completion(
            text=text if isinstance(text, str) else "", model=answer.model or self.model,
            input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
            cache_read_tokens=answer.cache_read_tokens,
            cache_write_tokens=answer.cache_write_tokens,
            cost_usd=prices.cost(answer.model, answer.input_tokens, answer.output_tokens,
                                 answer.usage),
            structured=_json_object(text) if "response_format" in kwargs else None)


    def request_kwargs(self, prompt: JudgePrompt, timeout: float) -> dict[str, Any]:
        """The keyword arguments of the ``litellm.acompletion`` call for ``prompt``."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            # system: the rubric; user: the data; Claude: with cache breakpoints
            "messages": prompt.as_messages() if self._cache_min is None
            else cache_messages(prompt, self._cache_min),
            "timeout": timeout,
            "max_retries": 0,  # the provider SDK's own retries (OpenAI client)
            "num_retries": 0,  # litellm's: ours honour Retry-After and the deadline
            "max_tokens": prompt.max_tokens or self.config.max_tokens,
            "temperature": 0.0 if prompt.temperature is None else prompt.temperature,
            # A parameter the provider does not take (temperature on some reasoning
            # models) is dropped rather than failing every verdict.
            "drop_params": True,
        }
        if prompt.schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": dict(prompt.schema)},
            }
        return kwargs


def _reasoning_utils() -> ModuleType:
    from litellm.litellm_core_utils.prompt_templates import reasoning_utils

    return reasoning_utils


def _completion(response: Any, model: str, *, structured: bool = False) -> Completion:
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    text = getattr(message, "content", None)
    usage = getattr(response, "usage", None)
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    text = text if isinstance(text, str) else ""
    details = getattr(usage, "prompt_tokens_details", None)
    read = _int_or_none(getattr(details, "cached_tokens", None))
    write = _int_or_none(getattr(details, "cache_write_tokens", None))
    return Completion(
        text=text,
        model=getattr(response, "model", None) or model,
        input_tokens=_int_or_none(getattr(usage, "prompt_tokens", None)),
        output_tokens=_int_or_none(getattr(usage, "completion_tokens", None)),
        cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
        cache_read_tokens=read,
        # a provider that reports reads but no writes caches on its own and bills none
        cache_write_tokens=0 if write is None and read is not None else write,
        # With response_format the content is the JSON object; a model or provider that
        # ignored the schema answers in prose, which the judge's text parser then reads.
        structured=_json_object(text) if structured else None,
    )


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
