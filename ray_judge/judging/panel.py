"""A judge panel's keys: the members, how their scores combine, when to escalate.

In a judges file::

    [judges.math_panel]
    panel = ["@current", "litellm:openai/gpt-4o-mini", "litellm:gemini/gemini-2.0-flash"]
    aggregate = "median"          # mean | median | majority
    min_members = 2               # fewer ok members: the verdict fails
    escalate_to = "litellm:anthropic/claude-opus-4-1"
    escalate_when = "spread > 0.3"
    escalation = "decides"        # or "joins"

:func:`check_panel` validates them when a definition is built and returns the
:class:`Panel` the pool convenes (:mod:`ray_judge.pool.panels`); a bad value raises
:class:`~ray_judge.errors.JudgeDefinitionError` naming the judge, the key and the value.
A panel definition without ``system`` judges with the default judge's rubric and parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpecError, JudgeDefinitionError, shown
from ..spec import BackendSpec

if TYPE_CHECKING:
    from .definition import JudgeDefinition

__all__ = ["CURRENT", "ESCALATIONS", "PANEL", "PANEL_KEYS", "Panel", "check_panel", "spread"]

#: The member that is whatever backend the override file and failover serve right now.
CURRENT = "@current"
#: ``backend=`` of a panel judge's request that an eval sends: judged by the panel, each
#: member in a lane of its own (:mod:`ray_judge.pool.pinning`).
PANEL = "@panel"
#: What the escalation backend's verdict does: it decides, or joins the aggregate.
ESCALATIONS = ("decides", "joins")
#: The definition keys of a panel (all but ``panel`` need ``panel``).
PANEL_KEYS = ("panel", "min_members", "escalate_to", "escalate_when", "escalation")
_MAX_MEMBERS = 16
_WHEN = re.compile(r"\s*spread\s*>\s*([0-9]*\.?[0-9]+)\s*")


@dataclass(frozen=True)
class Panel:
    """A validated panel: its members (None for ``@current``), labels as written, the
    aggregate, the quorum and the escalation rule."""

    labels: tuple[str, ...]
    members: tuple[BackendSpec | None, ...]
    aggregate: str
    min_members: int
    escalate_to: BackendSpec | None
    threshold: float | None
    escalation: str

    def escalates(self, scores: list[float]) -> bool:
        """Whether ok scores this far apart call the escalation backend: their spread
        exceeds the threshold or, with ``majority``, the vote is tied."""
        if self.escalate_to is None or self.threshold is None or len(scores) < 2:
            return False
        if spread(scores) > self.threshold:
            return True
        if self.aggregate == "majority":
            counts = sorted((scores.count(s) for s in set(scores)), reverse=True)
            return len(counts) > 1 and counts[0] == counts[1]
        return False


def spread(scores: list[float]) -> float:
    """max - min, rounded so 0.7 - 0.4 is 0.3 and not 0.30000000000000004."""
    return round(max(scores) - min(scores), 9) if scores else 0.0


def check_panel(judge: JudgeDefinition) -> Panel | None:
    """Validate ``judge``'s panel keys (normalising ``panel`` to a tuple); its Panel."""
    if judge.panel is None:
        for key in PANEL_KEYS[1:]:
            value = getattr(judge, key)
            if value is not None and not (key == "escalation" and value == "decides"):
                _fail(judge, key, value, "is a panel key: give panel = [...] too")
        return None
    panel = judge.panel
    if isinstance(panel, str) or not isinstance(panel, (list, tuple)) or not (
            2 <= len(panel) <= _MAX_MEMBERS):
        _fail(judge, "panel", panel, f"must be a list of 2 to {_MAX_MEMBERS} backend specs "
              f"(or {CURRENT!r})")
    members: list[BackendSpec | None] = []
    for entry in panel:
        members.append(None if entry == CURRENT else _spec(judge, "panel", entry))
    if len(set(map(str, members))) != len(members):
        _fail(judge, "panel", panel, "names a member twice")
    object.__setattr__(judge, "panel", tuple(panel))
    quorum = judge.min_members
    if quorum is None:
        quorum = len(panel) // 2 + 1
    elif isinstance(quorum, bool) or not isinstance(quorum, int) or not (
            1 <= quorum <= len(panel)):
        _fail(judge, "min_members", quorum, f"must be an integer from 1 to {len(panel)} "
              "(the panel's size)")
    escalate_to, threshold = _escalation(judge)
    if escalate_to is not None and escalate_to in members:
        _fail(judge, "escalate_to", judge.escalate_to, "is a member of the panel already "
              "(its verdict would be the member's, from the cache)")
    if judge.escalation not in ESCALATIONS:
        _fail(judge, "escalation", judge.escalation, f"must be one of {', '.join(ESCALATIONS)}")
    return Panel(tuple(panel), tuple(members), judge.aggregate, quorum, escalate_to,
                 threshold, judge.escalation)


def _escalation(judge: JudgeDefinition) -> tuple[BackendSpec | None, float | None]:
    if (judge.escalate_to is None) != (judge.escalate_when is None):
        given = "escalate_to" if judge.escalate_when is None else "escalate_when"
        _fail(judge, given, getattr(judge, given),
              "needs escalate_to and escalate_when both")
    if judge.escalate_to is None:
        return None, None
    if judge.escalate_to == CURRENT:
        _fail(judge, "escalate_to", CURRENT, "must be a backend spec, not @current")
    escalate_to = _spec(judge, "escalate_to", judge.escalate_to)
    match = (_WHEN.fullmatch(judge.escalate_when)
             if isinstance(judge.escalate_when, str) else None)
    if match is None or not 0 <= float(match.group(1)) < 1:
        _fail(judge, "escalate_when", judge.escalate_when,
              "must read 'spread > T' with T from 0 to below 1 (scores are on [0, 1])")
    return escalate_to, float(match.group(1))  # type: ignore[union-attr]


def _spec(judge: JudgeDefinition, key: str, value: Any) -> BackendSpec:
    try:
        return BackendSpec.parse(value)
    except (InvalidSpecError, TypeError, ValueError) as exc:
        _fail(judge, key, value, f"holds a bad backend spec ({exc})")
        raise AssertionError from None  # unreachable: _fail raises


def _fail(judge: JudgeDefinition, key: str, value: Any, problem: str) -> None:
    where = "" if judge.source == "code" else f"{judge.source}: "
    raise JudgeDefinitionError(
        f"{where}judge {judge.name!r}: {key} {problem}, got {shown(value, 80)}",
        judge=judge.name, key=key, value=shown(value, 80),
        path=None if judge.source == "code" else judge.source)
