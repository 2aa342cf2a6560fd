"""One panel judge's recent verdicts, counts and spend per member, for ``status()``.

Agreement is computed from the window when asked (:mod:`ray_judge.quality.agreement`);
a group panel adds one row per response.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..judging.panel import Panel
from ..quality.agreement import agreement
from ..verdict import Verdict

__all__ = ["ESCALATION", "WINDOW", "PanelWindow"]

#: The rolling window of verdicts per panel judge that agreement is measured over
#: (``LLM_JUDGE_PANEL_WINDOW``).
WINDOW = 1000
#: How the escalation backend is named among a panel's members in status().
ESCALATION = "escalation"


class PanelWindow:
    """Counts since start, and the last ``size`` rows of member scores."""

    def __init__(self, plan: Panel, size: int = WINDOW) -> None:
        self.plan = plan
        self.rows: deque[tuple[dict[str, float], float | None]] = deque(maxlen=size)
        self.verdicts = self.failed = self.escalated = 0
        names = [*plan.labels, *([ESCALATION] if plan.escalate_to is not None else [])]
        self.calls = dict.fromkeys(names, 0)
        self.cost = dict.fromkeys(names, 0.0)

    def add(self, verdicts: list[Verdict], escalation: Verdict | None,
            verdict: Verdict) -> None:
        """One panel verdict: its members' in panel order, and the escalation's."""
        self.verdicts += 1
        self.failed += not verdict.ok
        self.escalated += escalation is not None
        pairs = list(zip(self.plan.labels, verdicts, strict=True))
        if escalation is not None:
            pairs.append((ESCALATION, escalation))
        for label, v in pairs:
            if not v.spent_elsewhere:
                self.calls[label] += v.counts_call
                self.cost[label] += v.cost_usd or 0.0
        self.rows.append(({label: v.score for label, v in pairs[:len(verdicts)]
                           if v.ok and v.score is not None}, verdict.score))

    def agreement(self) -> dict[str, Any]:
        return agreement([r for r, _ in self.rows], [p for _, p in self.rows],
                         self.plan.labels)

    def snapshot(self) -> dict[str, Any]:
        calls, cost = sum(self.calls.values()), sum(self.cost.values())
        return {
            "members": list(self.plan.labels),
            "aggregate": self.plan.aggregate,
            "escalate_to": None if self.plan.escalate_to is None else str(
                self.plan.escalate_to),
            "verdicts": self.verdicts, "failed": self.failed, "escalated": self.escalated,
            "escalation_rate": round(self.escalated / self.verdicts, 4) if self.verdicts
            else None,
            "calls": dict(self.calls), "cost_usd": round(cost, 6),
            "call_share": {k: round(n / calls, 4) if calls else None
                           for k, n in self.calls.items()},
            "cost_share": {k: round(c / cost, 4) if cost else None
                           for k, c in self.cost.items()},
            "agreement": self.agreement(),
        }
