"""What the dispatcher (:mod:`.dispatch`) queues: one caller's request with its future,
and the signatures of its collaborators.

An :class:`Item` is a request waiting for a backend, or riding along an identical one
in flight (its ``followers``); :class:`WorkerLost` is how a worker pool says the worker
died with a micro-batch; :func:`check_shape` is the check that a worker answered each
request with the shape it asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest, Verdict
from .cache import Result

__all__ = ["Item", "Request", "Route", "Send", "WorkerLost", "check_shape"]


class WorkerLost(Exception):
    """The worker died with the micro-batch; its items go back to the queue."""


Request = JudgeRequest | GroupRequest


@dataclass
class Item:
    request: Request
    future: asyncio.Future[Result]
    lost: int = 0  # times a worker died while holding it
    rerouted: int = 0  # times another backend was asked after this one gave up
    key: str | None = None
    sample: int = 0  # the k-th independent judgement (its own cache key when > 0)
    pinned: bool = False  # its request named its backend: never rerouted
    followers: list[Item] = field(default_factory=list)  # identical requests riding along


Send = Callable[[int, str, list[Request]], Awaitable[Sequence[Result]]]
Route = Callable[[], "BackendSpec | tuple[BackendSpec, int | None]"]


def check_shape(request: Request, result: object) -> None:
    if isinstance(request, GroupRequest):
        if not (isinstance(result, tuple) and len(result) == len(request.responses)):
            raise RuntimeError(f"a group of {len(request.responses)} came back as "
                               f"{type(result).__name__} of {len(result)}"
                               if isinstance(result, (tuple, list)) else
                               f"a group came back as {type(result).__name__}")
    elif not isinstance(result, Verdict):
        raise RuntimeError(f"a request came back as {type(result).__name__}")
