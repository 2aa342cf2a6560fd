"""Prometheus metrics of judge panels (issue 23), beside :class:`~.metrics.JudgeMetrics`.

- ``judge_panel_verdicts_total{judge, status, escalated}``: panel verdicts; the
  escalation rate is ``escalated="true"`` over all.
- ``judge_panel_member_calls_total{judge, member}`` and
  ``judge_panel_member_cost_usd_total{judge, member}``: each member's calls and spend
  (cache hits left out; ``member="escalation"`` for the escalation backend), so a
  member's share of the panel's cost is its rate over the sum.
- ``judge_panel_agreement{judge, statistic}``: Krippendorff's ``alpha``, the
  ``effective_judges`` and the ``mean_spearman`` over the panel's rolling window,
  refreshed every :data:`AGREEMENT_EVERY` verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..verdict import Verdict

__all__ = ["AGREEMENT_EVERY", "PanelMetrics"]

#: Panel verdicts between two computations of the agreement gauges (it reads the window).
AGREEMENT_EVERY = 20


class PanelMetrics:
    """The panel instruments; ``instruments`` is ``ray.util.metrics`` (or a stand-in) and
    ``set_gauge`` the caller's gauge setter that keeps gauges alive."""

    def __init__(self, instruments: Any, set_gauge: Callable[..., None]) -> None:
        self._set = set_gauge
        self.verdicts = instruments.Counter(
            "judge_panel_verdicts_total", "Panel verdicts, by panel judge, status and "
            "whether the escalation backend was asked.",
            tag_keys=("judge", "status", "escalated"))
        self.calls = instruments.Counter(
            "judge_panel_member_calls_total", "Backend calls a panel's members made (cache "
            "hits not counted; member \"escalation\": the escalation backend).",
            tag_keys=("judge", "member"))
        self.cost = instruments.Counter(
            "judge_panel_member_cost_usd_total", "What a panel's members cost, in USD.",
            tag_keys=("judge", "member"))
        self.agreement = instruments.Gauge(
            "judge_panel_agreement", "Agreement of a panel's members over its rolling "
            "window: alpha (Krippendorff, interval), effective_judges, mean_spearman.",
            tag_keys=("judge", "statistic"))

    def record(self, judge: str, verdict: Verdict,
               members: Sequence[tuple[str, Verdict]]) -> None:
        """One panel verdict and its members' calls (label, member Verdict)."""
        escalated = "true" if verdict.extra.get("escalated") else "false"
        self.verdicts.inc(1, {"judge": judge, "status": verdict.status.value,
                              "escalated": escalated})
        for label, member in members:
            if member.spent_elsewhere:
                continue
            tags = {"judge": judge, "member": label}
            if member.counts_call:  # a group call's members carry it once
                self.calls.inc(1, tags)
            if member.cost_usd:
                self.cost.inc(member.cost_usd, tags)

    def set_agreement(self, judge: str, agreement: Mapping[str, Any]) -> None:
        rho = [r for r in (agreement.get("spearman") or {}).values() if r is not None]
        values = {"alpha": agreement.get("alpha"),
                  "effective_judges": agreement.get("effective_judges"),
                  "mean_spearman": sum(rho) / len(rho) if rho else None}
        for statistic, value in values.items():
            if value is not None:
                self._set(self.agreement, value, {"judge": judge, "statistic": statistic})
