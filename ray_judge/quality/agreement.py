"""How much a panel's members agree: pure functions of plain score rows.

A *row* is one request's member scores, ``{member: score}`` on [0, 1], holding only the
members that gave one (a failed member is missing, never a number). From a window of
rows:

- :func:`pairwise_spearman`: Spearman's rho between every two members, over the rows
  both scored.
- :func:`krippendorff_interval`: Krippendorff's alpha for interval data, the reliability
  of the panel as a whole (1: perfect agreement, 0: no better than chance); missing
  scores are allowed.
- :func:`mean_deviation`: each member's mean absolute distance from the panel's score.
- :func:`effective_judges`: the effective number of independent judges, ``n^2 / sum
  r_ij^2`` over the members' correlation matrix (the participation ratio of its
  eigenvalues: ``n`` for uncorrelated members, 1 when they all agree). Inspect's
  6-judge panel was worth about 1.9 (inspect_ai #4955).

:func:`agreement` puts them in one dict for ``status()["panels"]``.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence

from .stats import spearman

__all__ = ["agreement", "effective_judges", "krippendorff_interval", "mean_deviation",
           "pairwise_spearman"]

Row = Mapping[str, float]


def pairwise_spearman(rows: Sequence[Row], members: Sequence[str]
                      ) -> dict[tuple[str, str], float | None]:
    """(a, b) -> Spearman's rho over the rows where both scored (None: undefined)."""
    out: dict[tuple[str, str], float | None] = {}
    for a, b in itertools.combinations(members, 2):
        both = [(r[a], r[b]) for r in rows if a in r and b in r]
        out[(a, b)] = spearman([x for x, _ in both], [y for _, y in both])
    return out


def krippendorff_interval(rows: Sequence[Row]) -> float | None:
    """Krippendorff's alpha, interval metric; None when fewer than two rows hold two
    scores or every pairable score is the same (no disagreement to expect)."""
    units = [list(r.values()) for r in rows if len(r) >= 2]
    values = [v for unit in units for v in unit]
    n = len(values)
    if len(units) < 2 or n < 3:
        return None
    observed = sum(sum((a - b) ** 2 for a, b in itertools.permutations(unit, 2))
                   / (len(unit) - 1) for unit in units) / n
    # sum over ordered pairs of all values of (a - b)^2 = 2 n sum (v - mean)^2
    mean = statistics.fmean(values)
    expected = 2 * n * sum((v - mean) ** 2 for v in values) / (n * (n - 1))
    if expected == 0:
        return None
    return 1.0 - observed / expected


def mean_deviation(rows: Sequence[Row], panel: Sequence[float | None],
                   members: Sequence[str]) -> dict[str, float | None]:
    """member -> mean |member score - panel score| over the rows with both."""
    out: dict[str, float | None] = {}
    for member in members:
        gaps = [abs(r[member] - p) for r, p in zip(rows, panel, strict=True)
                if member in r and p is not None]
        out[member] = statistics.fmean(gaps) if gaps else None
    return out


def effective_judges(members: Sequence[str],
                     rho: Mapping[tuple[str, str], float | None]) -> float | None:
    """``n^2 / sum_ij r_ij^2`` (r_ii = 1); None when a correlation is undefined."""
    n = len(members)
    pairs = [rho.get((a, b), rho.get((b, a))) for a, b in itertools.combinations(members, 2)]
    if n < 2 or any(r is None for r in pairs):
        return None
    return n * n / (n + 2 * sum(r * r for r in pairs))  # type: ignore[operator]


def agreement(rows: Sequence[Row], panel: Sequence[float | None],
              members: Sequence[str]) -> dict[str, object]:
    """Every statistic of this module over one window, rounded for display."""
    rho = pairwise_spearman(rows, members)
    return {
        "n": len(rows),
        "spearman": {f"{a} ~ {b}": _round(r) for (a, b), r in rho.items()},
        "alpha": _round(krippendorff_interval(rows)),
        "mean_deviation": {m: _round(d) for m, d in
                           mean_deviation(rows, panel, members).items()},
        "effective_judges": _round(effective_judges(members, rho)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
