"""Splitting a group larger than the judge's ``max_group`` into chunks that share an anchor.

A judge grades a group on one scale, but two calls are two scales: the same judge may
be a point harsher in one than in the other. So every chunk also shows one **anchor**
response (the caller's first; any member would do, and a fixed one is reproducible),
and the chunks' scores are brought onto one scale through it (offset alignment):

* the anchor's score is the mean ``A`` of what each chunk gave it;
* every other member of chunk ``j`` gets its chunk's score plus ``A - a_j``, where
  ``a_j`` is the anchor's score in chunk ``j`` (a chunk that graded the anchor a point
  low is taken to have graded all its members a point low), clamped to the scale.

The other members are spread over as few chunks as fit (``max_group - 1`` each, next
to the anchor) and balanced: chunk sizes differ by at most one, so a group of 40 with
``max_group = 16`` is three chunks of 13 + the anchor, not 15 + 15 + 9. Each Verdict's
``extra["split"]`` records the rule's inputs so it can be checked or undone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_GROUP", "SplitPlan"]

DEFAULT_MAX_GROUP = 16
ANCHOR = 0
_PLACES = 12


@dataclass(frozen=True)
class SplitPlan:
    """How a group of ``size`` responses is judged: ``chunks`` of caller indices.

    Unsplit (``size <= max_group``) it is one chunk of everyone and no anchor; split,
    every chunk starts with the anchor.

    Example:
        >>> [len(c) for c in SplitPlan.for_size(40, 16).chunks]
        [14, 14, 14]
    """

    size: int
    max_group: int
    chunks: tuple[tuple[int, ...], ...]
    anchor: int | None = None

    @classmethod
    def for_size(cls, size: int, max_group: int = DEFAULT_MAX_GROUP) -> SplitPlan:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"a group needs at least one response, got {size!r}")
        if isinstance(max_group, bool) or not isinstance(max_group, int) or max_group < 2:
            raise ValueError(f"max_group must be an integer >= 2, got {max_group!r}")
        if size <= max_group:
            return cls(size, max_group, (tuple(range(size)),))
        others = [i for i in range(size) if i != ANCHOR]
        n_chunks = math.ceil(len(others) / (max_group - 1))
        base, extra = divmod(len(others), n_chunks)
        chunks, start = [], 0
        for j in range(n_chunks):
            end = start + base + (1 if j < extra else 0)
            chunks.append((ANCHOR, *others[start:end]))
            start = end
        return cls(size, max_group, tuple(chunks), ANCHOR)

    @property
    def split(self) -> bool:
        return self.anchor is not None

    def combine(self, chunk_scores: Sequence[Sequence[float]],
                scale: float) -> list[tuple[float, dict[str, Any] | None]]:
        """Raw scores per chunk (in chunk order) -> ``(score, extra["split"])`` per member,
        in the caller's order; ``None`` for the extra of an unsplit group."""
        if len(chunk_scores) != len(self.chunks) or any(
                len(s) != len(c) for s, c in zip(chunk_scores, self.chunks, strict=True)):
            raise ValueError("chunk_scores must hold one score per member of each chunk")
        if not self.split:
            return [(float(s), None) for s in chunk_scores[0]]
        anchor_scores = [float(s[0]) for s in chunk_scores]
        # Rounded to 12 places: three chunks that all gave the anchor 0.7 must leave it,
        # and everyone else, at 0.7, not 0.6999999999999998.
        aligned = round(statistics.fmean(anchor_scores), _PLACES)
        out: list[tuple[float, dict[str, Any] | None]] = [(0.0, None)] * self.size
        for j, (chunk, scores) in enumerate(zip(self.chunks, chunk_scores, strict=True)):
            offset = round(aligned - anchor_scores[j], _PLACES)
            for index, score in zip(chunk[1:], scores[1:], strict=True):
                moved = round(min(scale, max(0.0, float(score) + offset)), _PLACES)
                out[index] = (moved, self._extra(j, anchor_scores, offset, float(score)))
        out[self.anchor] = (aligned, self._extra(None, anchor_scores, None, None))
        return out

    def _extra(self, chunk: int | None, anchor_scores: list[float], offset: float | None,
               unaligned: float | None) -> dict[str, Any]:
        return {"chunks": len(self.chunks), "chunk": chunk, "anchor": self.anchor,
                "anchor_scores": anchor_scores, "offset": offset, "unaligned": unaligned,
                "rule": "offset-aligned on the anchor's mean score"}
