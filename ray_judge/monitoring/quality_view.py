"""The quality monitors of ``status()`` (``canaries``, ``length_bias``) read as a person
reads them: a line or two each, for ``show``, ``ray-judge status`` and ``watch``.

Pure functions of the status dict; an older judge's status without the keys gives no
lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["QualityLine", "canary_lines", "length_bias_lines"]

#: Warnings shown one per line; the rest are counted.
MAX_WARNINGS = 3


@dataclass(frozen=True)
class QualityLine:
    """One line of text; ``alarm`` when it is a warning (drawn in red)."""

    text: str
    alarm: bool = False


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def canary_lines(status: Mapping[str, Any]) -> tuple[QualityLine, ...]:
    """``612 sent at share 0.01, 598 judged, 3 passed (0.5%), cost $0.0412; most fooled:
    default on litellm:x 'colon' 2/75 (95% 1%-9%)``, then a line per kind that warns."""
    canaries = status.get("canaries")
    if not canaries:
        return ()
    if not canaries.get("share"):
        return (QualityLine("off (LLM_JUDGE_CANARY_SHARE=0)"),)
    judged, passed = canaries.get("judged", 0), canaries.get("passed", 0)
    text = (f"{canaries.get('sent', 0):,} sent at share {canaries['share']:g}, {judged:,} "
            f"judged, {passed:,} passed ({_percent(passed / judged if judged else None)}), "
            f"cost ${canaries.get('cost_usd', 0.0):.4f}")
    worst = _worst(canaries.get("judges") or {})
    if worst is not None:
        judge, backend, kind, t = worst
        text += (f"; most fooled: {judge} on {backend} {kind!r} {t['passed']}/{t['judged']} "
                 f"(95% {_percent(t['low'])}-{_percent(t['high'])})")
    lines = [QualityLine(text)]
    warnings = list(canaries.get("warnings") or [])
    lines += [QualityLine(f"WARNING: {w}", alarm=True) for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        lines.append(QualityLine(f"WARNING: {len(warnings) - MAX_WARNINGS} more canary kinds "
                                 "fool the judge (status --json)", alarm=True))
    return tuple(lines)


def _worst(judges: Mapping[str, Any]) -> tuple[str, str, str, Mapping[str, Any]] | None:
    """The kind with the highest lower bound (ties: the most passed), if any passed."""
    found = [(judge, backend, kind, t) for judge, backends in judges.items()
             for backend, kinds in backends.items() for kind, t in kinds.items()
             if t.get("passed")]
    if not found:
        return None
    return max(found, key=lambda x: (x[3].get("low") or 0.0, x[3]["passed"]))


def length_bias_lines(status: Mapping[str, Any]) -> tuple[QualityLine, ...]:
    """One line per judge and backend: the correlation and the quartiles' mean scores."""
    lines = []
    for judge, backends in sorted((status.get("length_bias") or {}).items()):
        for backend, window in sorted(backends.items()):
            prefix = "WARNING: " if window.get("warning") else ""
            lines.append(QualityLine(f"{prefix}{judge} on {backend}: {window['line']}",
                                     alarm=bool(window.get("warning"))))
    return tuple(lines)
