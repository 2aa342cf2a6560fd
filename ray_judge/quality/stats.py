"""The statistics a judge eval reports, as pure functions of plain lists.

Plain Python (an eval has tens to thousands of cases), so ``ray-judge eval`` starts
without numpy or scipy; the tests hold each to scipy's answer, ties and degenerate
inputs included. Spearman's rho is :func:`ray_judge.shift.stats.spearman`, which the
shift monitor uses too. A figure that is not defined (too few values, a constant side)
is None, never a number made up for it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..shift.stats import pearson, spearman

__all__ = ["cohen_kappa", "kendall_tau", "mean", "pearson", "percentile", "spearman"]


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Kendall's tau-b (ties on either side accounted for, as scipy's default); None
    for fewer than two pairs or a constant side. O(n^2): meant for a group's members
    or an eval's cases."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} != {len(ys)}")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    n0 = concordant + discordant
    denominator = math.sqrt((n0 + ties_x) * (n0 + ties_y))
    if denominator == 0:
        return None
    return max(-1.0, min(1.0, (concordant - discordant) / denominator))


def cohen_kappa(expected: Sequence[bool], got: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary raters; None when undefined (no cases, or chance
    agreement 1: both raters said the same one thing throughout)."""
    if len(expected) != len(got):
        raise ValueError(f"expected and got differ in length: {len(expected)} != {len(got)}")
    n = len(expected)
    if n == 0:
        return None
    observed = sum(e == g for e, g in zip(expected, got, strict=True)) / n
    p_e, p_g = sum(expected) / n, sum(got) / n
    chance = p_e * p_g + (1 - p_e) * (1 - p_g)
    if chance == 1:
        return None
    return (observed - chance) / (1 - chance)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), interpolated linearly between the closest ranks
    (numpy's default); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q!r}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
