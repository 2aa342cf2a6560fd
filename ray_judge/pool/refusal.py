"""Refusal bisection: the judge's own error for the one caller whose items it refused.

The judge checks a coalesced batch as a whole, so a ``TypeError``/``ValueError`` for it
may be any one caller's. The batcher splits the batch in halves and sends them again
until the culprit's chunk is alone; these helpers give that caller the judge's own
exception, its item indices numbered as the caller numbered them.
"""

from __future__ import annotations

import re

from ray.exceptions import RayTaskError

from .entry import Chunk

__all__ = ["clean", "renumber"]


def clean(exc: BaseException) -> BaseException:
    """The judge's own exception, without Ray's wrapper and traceback text."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


def renumber(exc: BaseException, chunk: Chunk) -> BaseException:
    """Item indices in the judge's message as the caller numbered them."""
    if chunk.entry.single:
        text = re.sub(r"request\[0\]", "request", str(exc))
    elif chunk.start:
        text = re.sub(r"request\[(\d+)\]",
                      lambda m: f"request[{int(m.group(1)) + chunk.start}]", str(exc))
    else:
        return exc
    try:
        return type(exc)(text)
    except Exception:
        return exc
