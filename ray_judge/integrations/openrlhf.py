"""OpenRLHF: the reward server behind ``--reward.remote_url`` (``ray-judge serve-rm``).

::

    ray-judge serve-rm --port 5000 --failure-reward 0.0          # on the judge's cluster
    --reward.remote_url http://127.0.0.1:5000/get_reward         # OpenRLHF's one line

OpenRLHF POSTs ``{"query": [prompt + response as decoded text], "prompts": [...],
"labels": [...]}``; the server cuts each response out of its query by its prompt
(:func:`split_query`), judges the batch in one Ray call through
:class:`~ray_judge.JudgeClient` and answers ``{"rewards": [...], "scores": [...],
"extra_logs": {...}}``, numbers only (OpenRLHF makes tensors of them). OpenRLHF needs a
number for every sample, so the reward of a failed judgement is the required
``--failure-reward``; failures are counted in ``extra_logs`` (``judge_failed``, and
``judge_<status>`` per failure status), per request.

The server binds 127.0.0.1 unless ``--host`` says otherwise. The reward decides what the
policy learns, so an open port is a way in: with ``--token-file`` every request must
carry the token, as ``Authorization: Bearer <token>`` or as the password of HTTP basic
auth, which is what OpenRLHF's client sends for a URL such as
``http://rm:<token>@node:5000/get_reward`` (it sets no headers of its own). Beyond
loopback the token is required (:mod:`~ray_judge.integrations.access`); while it listens
the server announces itself to the judge (:func:`announce`), so ``ray-judge status``
shows it, and warns about one started with ``--insecure-no-token``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .reward import failure_value, judge_client, judge_item, status_counts

__all__ = ["RewardServer", "announce", "split_query"]

logger = logging.getLogger(__name__)

#: Paths that answer: OpenRLHF's examples use /get_reward; "/" for a bare URL.
PATHS = ("/get_reward", "/")
#: Seconds a stopping server waits for the judge to hear its goodbye.
GOODBYE_S = 3.0


class BadRequest(ValueError):
    """The body does not have OpenRLHF's shape; answered with 400 and this message."""


def split_query(query: str, prompt: str, index: int) -> str:
    """The response: what follows ``prompt`` in ``query`` (prompt + response, decoded).

    The decoded query may start with special tokens the prompt lacks (a BOS), so the
    prompt is looked for, not only at the start.
    """
    at = query.find(prompt)
    if at < 0:
        raise BadRequest(
            f"query[{index}] does not contain prompts[{index}]: the response is cut out of "
            f"the query by its prompt (query starts {query[:80]!r}, prompt starts "
            f"{prompt[:80]!r})")
    return query[at + len(prompt):]


def _strings(body: dict[str, Any], key: str, n: int | None) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise BadRequest(f"{key!r} must be a list, got {type(value).__name__}")
    if n is not None and len(value) != n:
        raise BadRequest(f"{key!r} has {len(value)} entries, 'query' has {n}")
    for i, entry in enumerate(value):
        if not isinstance(entry, str) and not (key == "labels" and entry is None):
            raise BadRequest(f"{key}[{i}] must be a string, got {type(entry).__name__}")
    return value


def _items(body: object, judge: str | None) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    queries = _strings(body, "query", None)
    prompts = _strings(body, "prompts", len(queries))
    labels = _strings(body, "labels", len(queries)) if "labels" in body else [None] * len(
        queries)
    return [judge_item(prompt, split_query(query, prompt, i), label or None, judge=judge)
            for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels,
                                                           strict=True))]


def _authorised(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


@dataclass(frozen=True)
class RewardServer:
    """The HTTP app: settings in, :meth:`app` out (run it with aiohttp)."""

    failure_reward: float
    token: str | None = None
    judge: str | None = None
    actor: str | None = None
    namespace: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "failure_reward",
                           failure_value(self.failure_reward, "--failure-reward"))
        if self.token is not None and not self.token.strip():
            raise ValueError("the token is empty: give a non-empty token, or none")

    def __repr__(self) -> str:  # never the token
        return (f"RewardServer(failure_reward={self.failure_reward}, "
                f"token={'set' if self.token else None}, judge={self.judge!r})")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        for path in PATHS:
            app.router.add_post(path, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        if self.token is not None and not _authorised(request.headers.get("Authorization"),
                                                       self.token):
            return web.json_response({"error": "missing or wrong token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            items = _items(await request.json(), self.judge)
        except ValueError as exc:  # BadRequest, and JSON that does not parse
            return web.json_response({"error": str(exc)}, status=400)
        try:
            verdicts = await judge_client(self.actor, self.namespace).score_batch_async(items)
        except (TypeError, ValueError) as exc:  # the judge refused an item: say which
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.answer(verdicts))

    def answer(self, verdicts: Sequence[Any]) -> dict[str, Any]:
        """OpenRLHF's reply: a number per sample, failures counted in ``extra_logs``."""
        rewards = [v.score if v.ok else self.failure_reward for v in verdicts]
        counts = status_counts(verdicts)
        ok = counts.pop("ok", 0)
        extra_logs = {"judge_ok": ok, "judge_failed": len(verdicts) - ok}
        extra_logs.update({f"judge_{status}": n for status, n in sorted(counts.items())})
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra_logs}


async def serve(server: RewardServer, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner (``await runner.cleanup()`` stops) and the port."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server is not None else ()  # type: ignore[union-attr]
    return runner, sockets[0].getsockname()[1] if sockets else port


def server_record(host: str, port: int, token: bool, insecure: bool) -> dict[str, Any]:
    """What :func:`announce` tells the judge about this server (never the token);
    ``insecure``: beyond loopback without a token."""
    node, pid = socket.gethostname(), os.getpid()
    return {"id": f"{node}:{pid}", "url": f"http://{host}:{port}/get_reward", "token": token,
            "insecure": insecure, "node": node, "pid": pid}


async def announce(record: Mapping[str, Any], actor: str, namespace: str) -> None:
    """Tell the judge this server runs, every ``ANNOUNCE_S``, until cancelled; then say
    goodbye. A judge that is missing or slow is tried again at the next round: the
    announcement only feeds ``status()``, never the rewards."""
    from ..pool.cluster import find
    from ..pool.reward_servers import ANNOUNCE_S

    async def send(running: bool, timeout_s: float) -> None:
        try:
            handle = await asyncio.wait_for(asyncio.to_thread(find, actor, namespace),
                                            timeout_s)
            await asyncio.wait_for(handle.note_reward_server.remote(dict(record), running),
                                   timeout_s)
        except Exception as exc:  # status is best effort: serving goes on
            logger.debug("could not announce the reward server to the judge: %r", exc)

    try:
        while True:
            await send(True, ANNOUNCE_S)
            await asyncio.sleep(ANNOUNCE_S)
    finally:  # a server that stops says so; a killed one expires from status
        await send(False, GOODBYE_S)
