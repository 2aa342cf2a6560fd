"""How far one backend's scores moved from another's on the same requests.

Pure functions of paired scores ``(old, new)``; plain Python (a few hundred pairs), so
``import ray_judge`` needs neither numpy nor scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ShiftStats", "average_ranks", "discordant_share", "pearson", "spearman"]


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation; None for fewer than two pairs or a constant side."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} != {len(ys)}")
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    cov = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    vx = sum((a - mx) ** 2 for a in xs)
    vy = sum((b - my) ** 2 for b in ys)
    if vx == 0 or vy == 0:
        return None
    return max(-1.0, min(1.0, cov / math.sqrt(vx * vy)))


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on average ranks); None when it is not
    defined (fewer than two pairs, or one side constant)."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} != {len(ys)}")
    return pearson(average_ranks(xs), average_ranks(ys))


def discordant_share(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Of the pairs of requests the old backend ordered (different old scores), the share
    the new backend orders the other way round. A new tie is not a flip. None if the old
    backend ordered no pair. O(n^2): meant for a reservoir of a few hundred."""
    ordered = flipped = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx = xs[i] - xs[j]
            if dx == 0:
                continue
            ordered += 1
            if dx * (ys[i] - ys[j]) < 0:
                flipped += 1
    return flipped / ordered if ordered else None


@dataclass(frozen=True)
class ShiftStats:
    """Summary of paired scores: ``mean``/``median`` of ``new - old``, Spearman's rho,
    the share of order flips, and ``n`` pairs. Undefined figures are None."""

    n: int
    mean: float | None
    median: float | None
    spearman: float | None
    discordant: float | None

    @classmethod
    def of(cls, pairs: Sequence[tuple[float, float]]) -> ShiftStats:
        if not pairs:
            return cls(0, None, None, None, None)
        xs = [float(a) for a, _ in pairs]
        ys = [float(b) for _, b in pairs]
        diffs = [b - a for a, b in zip(xs, ys, strict=True)]
        return cls(len(pairs), statistics.fmean(diffs), statistics.median(diffs),
                   spearman(xs, ys), discordant_share(xs, ys))

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}
