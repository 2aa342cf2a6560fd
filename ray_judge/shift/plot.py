"""A picture of a switch's score shift: old vs new score on the same requests.

matplotlib is an optional extra (``pip install -e '.[plot]'``), imported only here and
only when a picture is asked for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .calibration import QuantileMap

__all__ = ["render_shift_plot"]


def render_shift_plot(report: Mapping[str, Any], out: Path) -> Path:
    """Write a PNG scatter of ``report["pairs"]`` (old, new) with the identity line and
    a monotone quantile map fitted on the pairs; returns ``out``.

    ``report`` is one judge's entry of the judge actor's ``shift_pairs()``.
    Raises ConfigError when matplotlib is missing, ValueError when there are no pairs.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the shift plot needs matplotlib: pip install 'ray_judge[plot]'",
                          name="matplotlib", value=None) from None
    pairs = [(float(a), float(b)) for a, b in report.get("pairs") or []]
    if not pairs:
        raise ValueError(f"no paired scores yet for judge {report.get('judge')!r}; "
                         "they arrive in the minutes after a switch")
    old, new = report["old"], report["new"]
    fig = Figure(figsize=(6.4, 6.4), dpi=110)
    ax = fig.subplots()
    counts = Counter(pairs)  # judges' scores are coarse: many pairs share a point
    xs, ys = zip(*counts, strict=True)
    sizes = [18 + 14 * (c - 1) for c in counts.values()]
    ax.scatter(xs, ys, s=sizes, alpha=0.55, color="tab:blue", edgecolors="none",
               label=f"{len(pairs)} requests (area: how many)")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="identity (no shift)")
    qmap = QuantileMap.fit(pairs)
    # The map takes a new score to the old scale; drawn in (old, new) space it is the
    # curve (map(y), y).
    grid = [i / 200 for i in range(201)]
    ax.plot([qmap(y) for y in grid], grid, color="tab:orange", linewidth=2,
            label="quantile map (new -> old scale)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"old score: {old}")
    ax.set_ylabel(f"new score: {new}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    judge = report.get("judge") or "default"
    mean, rho = report.get("mean"), report.get("spearman")
    ax.set_title(f"judge {judge}: {len(pairs)} pairs, mean shift "
                 f"{'n/a' if mean is None else f'{mean:+.2f}'}, Spearman "
                 f"{'n/a' if rho is None else f'{rho:.2f}'}", fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out
