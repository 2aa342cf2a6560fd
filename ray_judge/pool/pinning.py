"""A request's own backend (``backend=``) and sample index (``sample=``).

``backend="litellm:openai/gpt-4o-mini"`` on ``score``, a ``score_batch`` item,
``score_group`` or ``compare`` judges that request with that backend whatever the
override file says, for that request only: an eval (``ray-judge eval``) or an A/B check
beside a training run. It shares the backend's global limits and the verdict cache
(whose key names the backend) and is never rerouted by the failover chain
(:mod:`.lanes` says why). Its verdict is the backend's own: no calibration onto a
reference scale, no shift sampling, no score histogram of served rewards.

``backend="@panel"`` on a panel judge's request judges it with its panel as it serves,
but with every member in a lane of its own (``@current`` as the backend serving at that
moment, never rerouted): how ``ray-judge eval`` measures a panel beside a training run
without queueing ahead of it. On another judge's request it is an error.

``sample=k`` (k >= 1) asks for the k-th independent judgement of the same request: it
is cached under a key of its own, so ``--samples K`` measures how consistent a judge is
instead of reading one cached verdict K times. 0 (the default) is the ordinary one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidSpecError, shown
from ..judging.catalog import JudgeCatalog
from ..judging.panel import PANEL
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest
from .cache import Result
from .dispatch import Dispatcher
from .items import Request

__all__ = ["OPTIONS", "Pin", "batch_requests", "split_options", "submit_pinned"]

#: The per-request keys of a ``score_batch`` item that are not part of the request.
OPTIONS = ("backend", "sample")
_MAX_SAMPLE = 1000


@dataclass(frozen=True)
class Pin:
    """Where one request goes: its own backend (None: the serving one) and sample;
    ``panel``: a panel judge's request judged by its panel in lanes of its own."""

    backend: BackendSpec | None = None
    sample: int = 0
    panel: bool = False

    @classmethod
    def of(cls, backend: object = None, sample: object = 0, where: str = "request") -> Pin:
        """Validate ``backend=`` (a spec string) and ``sample=``; ValueError/TypeError
        naming ``where`` and showing the bad value."""
        spec = None
        if backend is not None and backend != PANEL:
            try:
                spec = (backend if isinstance(backend, BackendSpec)
                        else BackendSpec.parse(backend))
            except InvalidSpecError as exc:
                raise ValueError(f"{where}.backend: {exc}") from None
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise TypeError(f"{where}.sample must be an integer >= 0, got "
                            f"{type(sample).__name__}: {shown(sample)}")
        if not 0 <= sample <= _MAX_SAMPLE:
            raise ValueError(f"{where}.sample must be an integer in [0, {_MAX_SAMPLE}], "
                             f"got {sample!r}")
        return cls(spec, sample, backend == PANEL)

    @property
    def pinned(self) -> bool:
        return self.backend is not None


NONE = Pin()


def split_options(item: object, index: int | None) -> tuple[object, Pin]:
    """A ``score_batch`` item (``index`` None: a single request) without its
    per-request options, and those options."""
    if not isinstance(item, Mapping) or not any(k in item for k in OPTIONS):
        return item, NONE
    rest = {k: v for k, v in item.items() if k not in OPTIONS}
    where = "request" if index is None else f"request[{index}]"
    return rest, Pin.of(item.get("backend"), item.get("sample", 0), where)


def batch_requests(items: object, judges: JudgeCatalog
                   ) -> tuple[list[JudgeRequest | GroupRequest], list[Pin]]:
    """``score_batch``'s items as requests (an item with ``"responses"`` is a group) and
    their pins; TypeError/ValueError naming the item and the field."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (list, tuple)):
        raise TypeError(f"score_batch expects a list of dicts, got {type(items).__name__}")
    requests: list[JudgeRequest | GroupRequest] = []
    pins = []
    for i, item in enumerate(items):
        rest, pin = split_options(item, i)
        pins.append(pin)
        if isinstance(rest, Mapping) and "responses" in rest:
            requests.append(GroupRequest.from_mapping(rest, index=i))
        else:
            request = JudgeRequest.from_mapping(rest, index=i)
            judges.check(request, index=i)
            requests.append(request)
    return requests, pins


def submit_pinned(dispatcher: Dispatcher, requests: Sequence[Request],
                  pins: Sequence[Pin]) -> list[asyncio.Future[Result]]:
    """Submit each request to its pin's lane; the futures in the order of ``requests``."""
    groups: dict[Pin, list[int]] = {}
    for i, pin in enumerate(pins):
        groups.setdefault(pin, []).append(i)
    futures: list[Any] = [None] * len(requests)
    for pin, indices in groups.items():
        for i, future in zip(indices, dispatcher.submit(
                [requests[i] for i in indices], pin.backend, pin.sample), strict=True):
            futures[i] = future
    return futures
