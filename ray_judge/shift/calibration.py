"""A monotone quantile map: a new backend's scores onto a reference backend's scale.

Fitted on paired scores ``(reference, new)`` of the same requests. A new score ``x`` goes
to its place in the new backend's distribution (the mid-rank empirical CDF, so ties sit
in the middle of their run) and comes back as the reference's quantile at that place.
Between the fitted scores the map is linear; 0 and 1 are anchored to themselves. So:

* it never leaves [0, 1] (every knot is a reference score or an anchor);
* it never reorders scores (the knots rise in x and never fall in y);
* with a constant shift (new = reference + 0.3) it undoes the shift exactly.

Only the two marginal distributions are used, not which score was paired with which:
that is what makes the map monotone, and a refit with more pairs simply replaces it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["QuantileMap"]


def _quantile(sorted_values: Sequence[float], p: float) -> float:
    """Linear-interpolated quantile at ``p`` in [0, 1] (numpy's default rule)."""
    pos = p * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class QuantileMap:
    """The fitted map; call it on a new-backend score. Build with :meth:`fit`.

    Example:
        >>> m = QuantileMap.fit([(0.2, 0.5), (0.4, 0.7), (0.6, 0.9)])
        >>> round(m(0.7), 6)
        0.4
    """

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    n: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def fit(cls, pairs: Sequence[tuple[float, float]], **extra: Any) -> QuantileMap:
        """Fit on ``(reference score, new score)`` pairs (at least one)."""
        if not pairs:
            raise ValueError("a quantile map needs at least one (reference, new) pair")
        for ref, new in pairs:
            if not (0.0 <= ref <= 1.0 and 0.0 <= new <= 1.0):
                raise ValueError(f"scores must be within [0, 1], got pair ({ref!r}, {new!r})")
        ref_sorted = sorted(float(r) for r, _ in pairs)
        new_sorted = sorted(float(x) for _, x in pairs)
        n = len(new_sorted)
        xs, ys = [0.0], [0.0]
        i = 0
        while i < n:
            j = bisect.bisect_right(new_sorted, new_sorted[i])
            # mid-rank position of this run of ties, as a fraction of 0..n-1
            p = ((i + j - 1) / 2) / (n - 1) if n > 1 else 0.5
            x, y = new_sorted[i], _quantile(ref_sorted, p)
            if x == xs[-1]:  # a score of exactly 0 replaces the anchor
                ys[-1] = y
            else:
                xs.append(x)
                ys.append(max(y, ys[-1]))
            i = j
        if xs[-1] < 1.0:
            xs.append(1.0)
            ys.append(1.0)
        return cls(tuple(xs), tuple(ys), n, dict(extra))

    def __call__(self, score: float) -> float:
        x = min(1.0, max(0.0, float(score)))
        k = bisect.bisect_right(self.xs, x)
        if k >= len(self.xs):
            return self.ys[-1]
        x0, x1, y0, y1 = self.xs[k - 1], self.xs[k], self.ys[k - 1], self.ys[k]
        y = y0 + (y1 - y0) * ((x - x0) / (x1 - x0))
        # Rounding can step past a knot (with subnormal knots, by one ulp): the segment's
        # own ends bound it, which is what keeps the map monotone.
        return min(y1, max(y0, y))
