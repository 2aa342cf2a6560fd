"""A picture of an eval: expected vs got, one panel per backend.

matplotlib is an optional extra (``pip install 'ray_judge[plot]'``), imported only here
and only when a picture is asked for. Scores are drawn as a share of each case's judge
scale, so cases of judges with different scales share the axes. A ``label`` case is a
dot at (label, score); a ``range`` case a dot at the range's middle with the range as
a horizontal bar, green when the score is inside it, red when not; a ``pass`` case a
dot at 1 (pass) or 0 (fail) against the threshold line. Comparisons and groups have no
one expected score and are counted in the title instead. A failed verdict is drawn
nowhere: the title counts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError
from .metrics import Judged

__all__ = ["render_eval_plot", "require_matplotlib"]


def require_matplotlib() -> None:
    """ConfigError saying how to install matplotlib, when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'ray_judge[plot]'",
                          name="matplotlib", value=None) from None


def _share(value: float, scale: tuple[float, float]) -> float:
    low, high = scale
    return (value - low) / (high - low) if high > low else 0.0


def render_eval_plot(results: Mapping[str, Sequence[Judged]], out: Path) -> Path:
    """Write the PNG to ``out`` (its directory made if need be); returns ``out``."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    n = max(1, len(results))
    fig = Figure(figsize=(5.2 * n, 5.4), dpi=110)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (backend, judged) in zip(axes, results.items(), strict=False):
        _panel(ax, backend, judged)
    fig.suptitle("ray-judge eval: expected vs got (share of the judge's scale)", fontsize=11)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out


def _panel(ax, backend: str, judged: Sequence[Judged]) -> None:  # type: ignore[no-untyped-def]
    drawn = failed = other = 0
    shown_labels: set[str] = set()

    def once(label: str) -> str | None:
        if label in shown_labels:
            return None
        shown_labels.add(label)
        return label

    for j in judged:
        case = j.case
        if case.kind != "score":
            other += 1
            continue
        if j.got is None:
            failed += 1
            continue
        drawn += 1
        got = _share(j.got, case.scale)
        if case.label == "label":
            ax.scatter([_share(case.expected, case.scale)], [got], s=36, color="tab:blue",
                       alpha=0.8, label=once("label: expected score"))
        elif case.label == "range":
            low, high = (_share(v, case.scale) for v in case.expected)
            inside = j.error == 0
            color = "tab:green" if inside else "tab:red"
            ax.errorbar([(low + high) / 2], [got], xerr=[[(high - low) / 2]] * 2, fmt="o",
                        color=color, alpha=0.8, capsize=3, markersize=6,
                        label=once("range: score inside" if inside else "range: outside"))
        else:
            right = j.passed == case.expected
            # spread a little sideways, so that cases with the same score stay visible
            jitter = ((case.line * 37) % 11 - 5) / 110
            ax.scatter([(1.0 if case.expected else 0.0) + jitter], [got], s=36, marker="D",
                       color="tab:green" if right else "tab:red", alpha=0.7,
                       label=once("pass/fail: right" if right else "pass/fail: wrong"))
    thresholds = {_share(j.threshold, j.case.scale) for j in judged
                  if j.case.label == "pass"}
    for t in thresholds:
        ax.axhline(t, linestyle=":", color="grey", linewidth=1,
                   label=once(f"pass threshold ({t:.2f})"))
    labels = {j.case.label for j in judged if j.case.kind == "score"}
    if labels - {"pass"}:
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="expected = got")
    elif labels:
        ax.set_xticks([0, 1], ["fail", "pass"])
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xlabel("expected")
    ax.set_ylabel("got")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7)
    notes = [f"{drawn} drawn"] + ([f"{failed} failed"] if failed else []) + (
        [f"{other} pair/group not drawn"] if other else [])
    ax.set_title(f"{backend}\n{', '.join(notes)}", fontsize=9)
