"""What the fake provider puts on the wire: Anthropic Messages and OpenAI chat bodies.

Pure functions from (request body, text, ids) to bytes, so the server module holds only
the HTTP plumbing. Shapes follow the providers' public API references closely enough for
the official SDKs, LiteLLM and the Claude Code CLI to parse them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from .prompt_cache import PromptCaches, strip_marks

ANTHROPIC = "anthropic"
OPENAI = "openai"

# Deltas are split so that clients must really accumulate a stream, as with a real model.
_CHUNK_CHARS = 24

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERRORS = {  # status -> (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _text_chars(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_text_chars(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_text_chars(v) for v in obj)
    return 0


def input_tokens(body: dict[str, Any]) -> int:
    """Roughly chars/4 of everything the model would read (system, messages, tools);
    prompt-cache marks are not read."""
    chars = _text_chars(strip_marks([body.get("system"), body.get("messages"),
                                     body.get("tools")]))
    return max(1, chars // 4)


def _usage(fmt: str, body: dict[str, Any], n_out: int,
           caches: PromptCaches | None) -> dict[str, Any]:
    """The usage object of an answer, prompt caching included (``caches``: none)."""
    n_in = input_tokens(body)
    if fmt == ANTHROPIC:
        counts = (caches.anthropic(body, n_in) if caches is not None else {
            "input_tokens": n_in, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0})
        return {**counts, "output_tokens": n_out}
    cached = caches.openai(body, n_in) if caches is not None else 0
    return {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0}}


def output_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _chunks(text: str) -> Iterator[str]:
    for start in range(0, len(text), _CHUNK_CHARS):
        yield text[start:start + _CHUNK_CHARS]


def error_body(fmt: str, status: int, message: str) -> bytes:
    """An error in the provider's own format, so SDKs classify it as they would for real."""
    if fmt == ANTHROPIC:
        kind = _ANTHROPIC_ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error")
        return _dumps({"type": "error", "error": {"type": kind, "message": message},
                       "request_id": f"req_fake_{int(time.time() * 1e6)}"}).encode()
    kind, code = _OPENAI_ERRORS.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None))
    return _dumps({"error": {"message": message, "type": kind, "param": None,
                             "code": code}}).encode()


def tool_name(body: dict[str, Any], preferred: str) -> str | None:
    """The tool a structured answer calls: ``preferred`` when offered, else the only one."""
    names = [t.get("name") for t in body.get("tools") or () if isinstance(t, dict)]
    if preferred in names:
        return preferred
    return names[0] if len(names) == 1 and isinstance(names[0], str) else None


def _tool_block(ident: str, tool_call: tuple[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{ident}", "name": tool_call[0],
            "input": tool_call[1]}


def message(fmt: str, body: dict[str, Any], text: str, ident: str,
            tool_call: tuple[str, Any] | None = None, *,
            caches: PromptCaches | None = None) -> bytes:
    """A complete, non-streamed answer; ``tool_call`` (name, input): Anthropic only;
    ``caches``: the server's prompt caches (None: nothing cached)."""
    model = body.get("model") or "fake-model"
    n_out = output_tokens(text)
    if fmt == ANTHROPIC:
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or (
            tool_call is None) else []
        if tool_call is not None:
            content.append(_tool_block(ident, tool_call))
            n_out += output_tokens(_dumps(tool_call[1]))
        return _dumps({
            "id": f"msg_{ident}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "end_turn" if tool_call is None else "tool_use",
            "stop_sequence": None, "usage": _usage(fmt, body, n_out, caches),
        }).encode()
    return _dumps({
        "id": f"chatcmpl-{ident}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(fmt, body, n_out, caches),
    }).encode()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {_dumps(data)}\n\n".encode()


def _chunk(ident: str, model: str, created: int, delta: dict[str, Any],
           finish: str | None) -> bytes:
    data = {"id": f"chatcmpl-{ident}", "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return f"data: {_dumps(data)}\n\n".encode()


def stream(fmt: str, body: dict[str, Any], text: str, ident: str,
           tool_call: tuple[str, Any] | None = None, *,
           caches: PromptCaches | None = None) -> Iterator[bytes]:
    """The SSE events of a streamed answer, one ``bytes`` per event."""
    model = body.get("model") or "fake-model"
    n_out = output_tokens(text)
    if fmt == ANTHROPIC:
        yield _sse("message_start", {"type": "message_start", "message": {
            "id": f"msg_{ident}", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": _usage(fmt, body, 1, caches)}})
        index = 0
        if text or tool_call is None:
            yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}})
            yield _sse("ping", {"type": "ping"})
            for piece in _chunks(text):
                yield _sse("content_block_delta", {
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        if tool_call is not None:
            arguments = _dumps(tool_call[1])
            n_out += output_tokens(arguments)
            yield _sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {**_tool_block(ident, tool_call), "input": {}}})
            for piece in _chunks(arguments):
                yield _sse("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        stop = "end_turn" if tool_call is None else "tool_use"
        yield _sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": n_out}})
        yield _sse("message_stop", {"type": "message_stop"})
        return
    created = int(time.time())
    yield _chunk(ident, model, created, {"role": "assistant", "content": ""}, None)
    for piece in _chunks(text):
        yield _chunk(ident, model, created, {"content": piece}, None)
    yield _chunk(ident, model, created, {}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"id": f"chatcmpl-{ident}", "object": "chat.completion.chunk",
                 "created": created, "model": model, "choices": [],
                 "usage": _usage(fmt, body, n_out, caches)}
        yield f"data: {_dumps(usage)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def malformed_message(fmt: str) -> bytes:
    """A 200 body cut off mid-JSON, as from a proxy that died halfway."""
    if fmt == ANTHROPIC:
        return b'{"id":"msg_broken","type":"message","content":[{"type":"text","text":"SCO'
    return b'{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"index":0,"mes'


def malformed_stream(fmt: str, body: dict[str, Any], ident: str) -> Iterator[bytes]:
    """A stream that starts well, then sends an event whose data is not JSON and ends."""
    if fmt == ANTHROPIC:
        yield next(stream(fmt, body, "", ident))
        yield b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"de\n\n'
        return
    yield b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"de\n\n'


def count_tokens(body: dict[str, Any]) -> bytes:
    return _dumps({"input_tokens": input_tokens(body)}).encode()
