"""The lean transport's LiteLLM side: LiteLLM decides, :mod:`.http_transport` sends.

For the wire formats that nearly every judge deployment speaks (:data:`LEAN_WIRES`:
OpenAI chat completions for ``openai/`` and ``hosted_vllm/``, Anthropic Messages for
``anthropic/``), ``litellm.acompletion`` spends ~25x the CPU of the HTTP call itself.
So LiteLLM is asked once per request *shape* (model, roles of the messages, temperature,
max_tokens, schema) what it would send, and the answer becomes a :class:`Route`:

* LiteLLM's own ``completion()`` runs with placeholder message contents and a logging
  object that stops it right before the HTTP call (its ``pre_call`` hook, the one
  ``litellm.utils.return_raw_request`` uses): the URL, headers and JSON body it was about
  to send are kept, the body split around the placeholders. Provider, model name, API
  key and base URL are LiteLLM's (``get_llm_provider``, the same environment variables),
  and so is every translation of the call (Anthropic's ``system`` field and
  ``max_tokens``, ``max_completion_tokens`` and dropped parameters for reasoning models,
  ``response_format``). The headers the OpenAI SDK adds on its own (key, organization,
  project) are not in what LiteLLM hands over: they are added as the SDK adds them; the
  SDK's request options in what LiteLLM hands it (``extra_headers``, where LiteLLM puts
  ``litellm.headers`` and a call's ``headers``, and ``extra_body``) leave the body as
  the SDK takes them out of it.
* Each call fills the contents in with one ``json.dumps`` per message text (a content,
  or each text block of a content that carries prompt-cache breakpoints).

A failure on a route is LiteLLM's own exception (:mod:`.litellm_errors`), and its price
LiteLLM's (:mod:`.litellm_pricing`).

A shape LiteLLM cannot plan, a missing API key, an empty message, or Anthropic with a
schema (LiteLLM rewrites the answer's tool call) takes LiteLLM's own path instead.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["LEAN_WIRES", "Route", "plan_route", "route_from_capture", "shape_key",
           "ssl_setting"]

logger = logging.getLogger(__name__)

#: LiteLLM provider -> the wire format the lean transport speaks to it
LEAN_WIRES = {"openai": "openai", "hosted_vllm": "openai", "anthropic": "anthropic"}

_PLACEHOLDER = "\x00ray-judge-{}\x00"
_SLOT = re.compile(r'"\\u0000ray-judge-(\d+)\\u0000"')


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_encode_string = json.encoder.encode_basestring  # C, when available: a str as JSON


def dumps(value: Any) -> str:
    """Compact JSON; a string (every message content) straight through json's C encoder."""
    return _encode_string(value) if type(value) is str else _ENCODER.encode(value)


@dataclass(frozen=True)
class Route:
    """Where and how one request shape goes: everything but the message contents."""

    provider: str  # LiteLLM's provider name
    model: str  # the model name after LiteLLM stripped the provider
    wire: str  # "openai" or "anthropic"
    sdk: bool  # LiteLLM would have used the OpenAI SDK (its error shapes differ)
    url: str
    headers: dict[str, str]
    parts: tuple[str, ...]  # the JSON body around the contents
    slots: tuple[int, ...]  # which message text (a content, or a block's) follows parts[i]

    def body(self, messages: list[dict[str, Any]]) -> bytes:
        parts = self.parts
        texts = [text for message in messages for text in _texts(message["content"])]
        out = [parts[0]]
        for i, index in enumerate(self.slots):
            out.append(dumps(texts[index]))
            out.append(parts[i + 1])
        return "".join(out).encode()

    def __repr__(self) -> str:  # never the headers: they hold the API key
        return f"Route({self.provider}/{self.model} -> {self.url})"


def _texts(content: Any) -> tuple[str, ...]:
    """A message content's texts: the string, or each text block's (cache breakpoints)."""
    if isinstance(content, str):
        return (content,)
    return tuple(block["text"] for block in content)


def _content_shape(content: Any) -> Any:
    """What the route depends on in one message content; None when it cannot go lean.

    A string, or a list of text blocks (with or without a ``cache_control`` mark)."""
    if isinstance(content, str):
        return "text" if content else None
    if not isinstance(content, list) or not content:
        return None
    shape = []
    for block in content:
        if not (isinstance(block, dict) and block.get("type") == "text"
                and isinstance(block.get("text"), str) and block["text"]
                and set(block) <= {"type", "text", "cache_control"}):
            return None
        mark = block.get("cache_control")
        shape.append(None if mark is None else dumps(mark))
    return tuple(shape)


def shape_key(kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """What the route depends on; None when a message cannot take the lean path."""
    roles = []
    for message in kwargs["messages"]:
        shape = _content_shape(message.get("content"))
        if shape is None or len(message) != 2:
            return None
        roles.append((message["role"], shape))
    rest = {k: v for k, v in kwargs.items() if k not in ("messages", "timeout")}
    nested = any(isinstance(v, (dict, list)) for v in rest.values())  # e.g. extra_headers
    return (tuple(roles), dumps(rest) if nested else tuple(rest.items()))


def _placeholders(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with every text a numbered placeholder, in :func:`_texts` order."""
    count = 0
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            content = _PLACEHOLDER.format(count)
            count += 1
        else:
            blocks = []
            for block in content:
                blocks.append({**block, "text": _PLACEHOLDER.format(count)})
                count += 1
            content = blocks
        out.append({"role": message["role"], "content": content})
    return out


def _api_key(litellm: ModuleType, provider: str, dynamic: str | None) -> str | None:
    # The lookups of LiteLLM's completion() for these providers, in its order.
    if provider == "openai":
        return (litellm.api_key or litellm.openai_key
                or litellm.get_secret_str("OPENAI_API_KEY"))
    if provider == "anthropic":
        key = (litellm.anthropic_key or litellm.api_key
               or litellm.get_secret_str("ANTHROPIC_API_KEY"))
        # An OAuth token brings extra beta headers per call: LiteLLM's path keeps them.
        return None if key and key.startswith("sk-ant-oat") else key
    return dynamic


def _sdk_headers(litellm: ModuleType, key: str, kwargs: dict[str, Any]) -> dict[str, str]:
    """The headers the OpenAI SDK's client adds to LiteLLM's request (not in the capture).

    LiteLLM resolves the organization and hands it to the client; the client falls back
    to ``OPENAI_ORG_ID``, reads the project from ``OPENAI_PROJECT_ID`` and sends each one
    that is not None (``openai._client.OpenAI.default_headers``).
    """
    organization = (kwargs.get("organization") or litellm.organization
                    or litellm.get_secret_str("OPENAI_ORGANIZATION") or None)
    if organization is None:
        organization = os.environ.get("OPENAI_ORG_ID")
    project = os.environ.get("OPENAI_PROJECT_ID")
    headers = {"Authorization": f"Bearer {key}"}
    if organization is not None:
        headers["OpenAI-Organization"] = organization
    if project is not None:
        headers["OpenAI-Project"] = project
    return headers


def plan_route(litellm: ModuleType, kwargs: dict[str, Any]) -> Route | None:
    """Ask LiteLLM what it would send for this request shape; None: use LiteLLM itself.

    Never raises: a LiteLLM whose internals moved costs speed, not verdicts.
    """
    try:
        return _plan(litellm, kwargs)
    except Exception:
        logger.warning("lean transport cannot plan %s; using litellm.acompletion",
                       kwargs.get("model"), exc_info=True)
        return None


def _plan(litellm: ModuleType, kwargs: dict[str, Any]) -> Route | None:
    try:
        model, provider, dynamic_key, _ = litellm.get_llm_provider(kwargs["model"])
    except Exception:  # an unknown provider: LiteLLM's path reports it
        return None
    wire = LEAN_WIRES.get(provider)
    if wire is None or (wire == "anthropic" and "response_format" in kwargs):
        return None
    key = _api_key(litellm, provider, dynamic_key)
    if not key:
        return None  # LiteLLM's path raises its own missing-key error
    messages = _placeholders(kwargs["messages"])
    n_texts = sum(len(_texts(m["content"])) for m in messages)
    captured = _capture(litellm, {**kwargs, "messages": messages, "api_key": key})
    if captured is None:
        return None
    try:
        return route_from_capture((provider, model, wire), captured,
                                  _sdk_headers(litellm, key, kwargs), n_texts)
    except (KeyError, TypeError, ValueError) as exc:
        logger.info("lean transport cannot plan %s (%s); using litellm", kwargs["model"], exc)
        return None


def route_from_capture(where: tuple[str, str, str], captured: dict[str, Any],
                       sdk_headers: dict[str, str], n_texts: int) -> Route | None:
    """The route for what LiteLLM was about to send; None when it cannot be replayed.

    ``where`` is (provider, model, wire), ``captured`` what :func:`plan_route`'s probe
    kept of LiteLLM's request, ``sdk_headers`` the OpenAI SDK's own headers, ``n_texts``
    how many message texts (contents, or text blocks of a content) it holds. Raises
    KeyError, TypeError or ValueError on a capture of an unexpected shape.
    """
    provider, model, wire = where
    body = dict(captured["complete_input_dict"])
    sdk = bool(captured.get("openai_sdk")) or (wire == "openai" and "extra_body" in body)
    if sdk:
        # What LiteLLM hands the SDK's create() holds the SDK's own request options too:
        # extra_body's keys go to the top level of the JSON, extra_headers over the
        # client's headers (LiteLLM puts litellm.headers and headers= there as well).
        if any(option in body for option in _SDK_ELSEWHERE):
            return None  # the SDK sends these outside the body: LiteLLM's path
        body.update(body.pop("extra_body", None) or {})
        url = str(captured["api_base"]).rstrip("/") + "/chat/completions"
        headers = _merge_headers(sdk_headers, body.pop("extra_headers", None) or {})
    else:
        url = str(captured["api_base"])
        headers = {str(k): str(v) for k, v in (captured.get("headers") or {}).items()}
        if len({k.lower() for k in headers}) != len(headers):
            return None  # one name twice (httpx sends both values): LiteLLM's path
    if body.get("stream"):
        return None
    if not _has(headers, "content-type"):
        headers["Content-Type"] = "application/json"
    pieces = _SLOT.split(dumps(body))
    parts, slots = tuple(pieces[0::2]), tuple(int(s) for s in pieces[1::2])
    if sorted(slots) != list(range(n_texts)):
        return None  # LiteLLM changed or merged a content: keep its path for this shape
    return Route(provider, model, wire, sdk, url, headers, parts, slots)


#: options of the OpenAI SDK's create() that it puts in the URL or the client, not the body
_SDK_ELSEWHERE = ("extra_query", "timeout")


def _merge_headers(*mappings: Mapping[str, Any]) -> dict[str, str]:
    """Case-insensitive, the later mapping wins, as ``openai._base_client._merge_headers``."""
    merged: dict[str, tuple[str, str]] = {}
    for mapping in mappings:
        for name, value in mapping.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header {name!r} is not a string")  # LiteLLM's path decides
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def _has(headers: dict[str, str], name: str) -> bool:
    return any(k.lower() == name for k in headers)


_capture_class: type | None = None


def _capture(litellm: ModuleType, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Run LiteLLM's completion() until right before it sends; what it would send."""
    global _capture_class  # noqa: PLW0603 - one subclass per process, made on first use
    from litellm.litellm_core_utils.litellm_logging import Logging, RawRequestCaptured

    if _capture_class is None:
        class _Capture(Logging):  # type: ignore[misc,valid-type]
            captured: dict[str, Any] | None = None

            def pre_call(self, input: Any, api_key: Any, model: Any = None,
                         additional_args: Any = None) -> None:
                self.captured = dict(additional_args or {})
                raise RawRequestCaptured()

        _capture_class = _Capture
    probe = _capture_class(
        model=kwargs["model"], messages=kwargs["messages"], stream=False,
        call_type="completion", litellm_call_id="ray-judge-plan",
        start_time=datetime.datetime.now(), function_id="ray-judge-plan",
        raw_request_only=True)
    try:
        litellm.completion(**kwargs, litellm_logging_obj=probe)
    except Exception as exc:  # RawRequestCaptured, wrapped by LiteLLM or not
        logger.debug("litellm planning stopped with %s", type(exc).__name__)
    captured = probe.captured
    if not captured or not captured.get("complete_input_dict") or not captured.get("api_base"):
        return None
    return captured


def ssl_setting(litellm: ModuleType) -> Any:
    """LiteLLM's TLS settings (``SSL_VERIFY``, ``SSL_CERT_FILE``, ...) in aiohttp's terms."""
    from litellm.llms.custom_httpx.http_handler import get_ssl_configuration

    setting = get_ssl_configuration()
    return setting if isinstance(setting, (bool, ssl.SSLContext)) else True
