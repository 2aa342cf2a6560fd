"""Refusal bisection: the judge's own error for the one caller whose items it refused.

The judge checks a coalesced batch as a whole, so a ``TypeError``/``ValueError`` for it
may be any one caller's. :func:`bisect` splits the batch in halves, which the batcher
sends again, until the culprit's chunk is alone; that caller gets the judge's own
exception, its item indices numbered as the caller numbered them, and every other
caller is still served.
"""

from __future__ import annotations

import re

from ray.exceptions import RayTaskError

from .entry import Chunk

__all__ = ["bisect", "clean", "renumber"]


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


def bisect(chunks: list[Chunk], exc: BaseException) -> list[list[Chunk]]:
    """What to send again after the judge refused ``chunks`` with ``exc``.

    A chunk is one caller's single item or (part of) one caller's batch, whose items
    the judge checks together, so an error for a lone chunk is its caller's: it gets
    the error and nothing is sent again. More chunks are split in two halves.
    """
    if len(chunks) == 1:
        chunks[0].entry.fail(renumber(exc, chunks[0]))
        return []
    half = len(chunks) // 2
    return [chunks[:half], chunks[half:]]
