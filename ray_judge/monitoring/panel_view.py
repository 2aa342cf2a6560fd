"""Judge panels as people see them: ``status()["panels"]`` in two lines per panel.

Read by :func:`~ray_judge.monitoring.status_view.read_status` for ``show``,
``ray-judge status`` and ``watch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PanelState", "panel_states", "short"]


@dataclass(frozen=True)
class PanelState:
    """One panel judge over its rolling window (:meth:`~ray_judge.pool.panels.Panels.snapshot`)."""

    name: str
    members: tuple[str, ...]
    verdicts: int
    failed: int
    escalated: int
    escalate_to: str | None
    cost_usd: float
    call_share: dict[str, float | None]
    cost_share: dict[str, float | None]
    agreement: dict[str, Any]

    def text(self) -> str:
        """``math_panel: 120 verdicts, 2 failed, escalated 12 (10.0%); alpha 0.71,
        1.9 effective judges of 3, spearman a ~ b 0.80, ...``."""
        line = f"{self.name}: {self.verdicts:,} verdicts, {self.failed:,} failed"
        if self.escalate_to is not None:
            rate = self.escalated / self.verdicts if self.verdicts else 0.0
            line += f", escalated {self.escalated:,} ({rate:.1%})"
        a = self.agreement
        line += (f"; alpha {_num(a.get('alpha'))}, {_num(a.get('effective_judges'), 1)} "
                 f"effective judges of {len(self.members)}")
        rho = ", ".join(f"{' ~ '.join(map(short, pair.split(' ~ ')))} {_num(r)}"
                        for pair, r in (a.get("spearman") or {}).items() if r is not None)
        return f"{line}; spearman {rho}" if rho else line

    def members_text(self) -> str:
        """``@current calls 33% cost 40% dev 0.05; ...; escalation calls 4% cost 20%``."""
        deviation = self.agreement.get("mean_deviation") or {}
        parts = []
        for name in self.call_share:
            part = (f"{short(name)} calls {_share(self.call_share.get(name))} "
                    f"cost {_share(self.cost_share.get(name))}")
            if name in deviation:
                part += f" dev {_num(deviation[name])}"
            parts.append(part)
        return f"cost ${self.cost_usd:.4f}: " + "; ".join(parts)


def panel_states(status: Mapping[str, Any]) -> tuple[PanelState, ...]:
    """The panels of a status (none in an older judge's)."""
    return tuple(
        PanelState(name=name, members=tuple(p["members"]), verdicts=p["verdicts"],
                   failed=p["failed"], escalated=p["escalated"],
                   escalate_to=p.get("escalate_to"), cost_usd=p.get("cost_usd") or 0.0,
                   call_share=dict(p.get("call_share") or {}),
                   cost_share=dict(p.get("cost_share") or {}),
                   agreement=dict(p.get("agreement") or {}))
        for name, p in sorted((status.get("panels") or {}).items()))


def short(member: str) -> str:
    """A member as a view shows it: its model (``litellm:openai/gpt-4o`` -> ``gpt-4o``)."""
    return member if member.startswith("@") else member.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
