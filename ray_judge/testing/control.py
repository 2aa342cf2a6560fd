"""The fake provider's control API, through which a FakeLLMProcess scripts it by URL.

``POST /_fake/script`` (a JSON list of behaviours), ``POST /_fake/default``,
``POST /_fake/slow`` (``{"marker", "delay_s", "times"}``),
``POST /_fake/reset``, ``GET /_fake/requests`` and ``GET /_fake/stats``: the same
controls :class:`~ray_judge.testing.FakeLLMServer` offers in process. Control
calls are not recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .behaviour import Behaviour

if TYPE_CHECKING:
    from .server import FakeLLMServer

__all__ = ["ControlAPI"]


class ControlAPI:
    """The ``/_fake/*`` routes of one server."""

    def __init__(self, server: FakeLLMServer) -> None:
        self.server = server

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_fake/script", self._script)
        app.router.add_post("/_fake/default", self._default)
        app.router.add_post("/_fake/slow", self._slow)
        app.router.add_post("/_fake/reset", self._reset)
        app.router.add_get("/_fake/requests", self._requests)
        app.router.add_get("/_fake/stats", self._stats)

    async def _script(self, request: web.Request) -> web.StreamResponse:
        try:
            items = await request.json()
            if not isinstance(items, list):
                raise TypeError("expected a JSON list of behaviours")
            self.server.script(*(Behaviour.from_dict(item) for item in items))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"pending": self.server.pending})

    async def _default(self, request: web.Request) -> web.StreamResponse:
        try:
            self.server.default = Behaviour.from_dict(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.server.default.to_dict())

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.json()
            if not isinstance(spec, dict):
                raise TypeError("expected a JSON object with marker, delay_s and times")
            self.server.slow(spec.get("marker"), spec.get("delay_s"), spec.get("times", 1))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"slow": True})

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        self.server.reset()
        return web.json_response({"reset": True})

    async def _requests(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([r.to_dict() for r in self.server.requests])

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"model_calls": self.server.model_calls,
                                  "pending": self.server.pending,
                                  "abandoned": self.server.abandoned,
                                  "tails": self.server.latency.tails})
