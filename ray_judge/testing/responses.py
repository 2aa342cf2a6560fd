"""The HTTP responses the fake provider sends, over aiohttp.

JSON bodies and each provider's error format (built by ``_wire``), server-sent event
streams, a connection dropped before any status line, and what a ``structured``
behaviour answers (a tool call where the request offers the tool, else JSON text).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from . import _wire
from .behaviour import STRUCTURED_OUTPUT_TOOL, Behaviour

__all__ = ["JSON", "drop_connection", "error", "json_response", "send_stream", "structured"]

JSON = "application/json"


def json_response(payload: bytes, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    merged = {"content-type": JSON, **(headers or {})}
    return web.Response(status=status, body=payload, headers=merged)


def error(fmt: str, status: int, message: str,
          headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(_wire.error_body(fmt, status, message), status, headers)


def structured(fmt: str, body: dict[str, Any], behaviour: Behaviour,
               text: str) -> tuple[str, tuple[str, Any] | None]:
    """The answer's text and tool call (name, input) for a ``structured`` behaviour."""
    if behaviour.structured is None:
        return text, None
    name = _wire.tool_name(body, STRUCTURED_OUTPUT_TOOL)
    if fmt == _wire.ANTHROPIC and name is not None:
        return text, (name, behaviour.structured)
    # No tool to call: the JSON as the answer's text, as a response_format answer has it.
    return json.dumps(behaviour.structured), None


def drop_connection(request: web.Request) -> web.Response:
    # Closing the transport before the handler returns means aiohttp has nowhere to write
    # the response: the client sees the connection end with no status line at all.
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


async def send_stream(request: web.Request, events: Any, status: int,
                      headers: Mapping[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers={
        "content-type": "text/event-stream", "cache-control": "no-cache", **headers})
    await response.prepare(request)
    for event in events:
        await response.write(event)
    await response.write_eof()
    return response
