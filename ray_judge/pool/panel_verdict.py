"""One panel verdict from its members' verdicts (and the escalation backend's).

:func:`combine` applies :mod:`.panels`' rules: the ``aggregate`` of the ok members, a
failed member listed and never averaged in, too few ok members a failed verdict that
says why, the escalation verdict deciding or joining, and usage summed over the calls
(cache hits cost nothing again).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..judging.definition import JudgeDefinition
from ..judging.judgement import aggregate_scores
from ..judging.panel import Panel, spread
from ..verdict import Status, Verdict

__all__ = ["combine", "entry"]

_SUMMED = ("input_tokens", "output_tokens", "cost_usd", "cache_read_tokens",
           "cache_write_tokens")


def entry(label: str, verdict: Verdict) -> dict[str, Any]:
    """A member's line in ``extra["panel"]``."""
    return {"member": label, "backend": verdict.backend, "model": verdict.model,
            "score": verdict.score, "status": verdict.status.value, "error": verdict.error,
            "cost_usd": verdict.cost_usd, "input_tokens": verdict.input_tokens,
            "output_tokens": verdict.output_tokens, "latency_s": round(verdict.latency_s, 4),
            "cached": verdict.cached}


def combine(definition: JudgeDefinition, plan: Panel, verdicts: list[Verdict],
            escalation: Verdict | None, *, latency_s: float, metadata: Any = None,
            extra: dict[str, Any] | None = None) -> Verdict:
    """The panel's Verdict from its members' (in panel order) and the escalation's."""
    called = [*verdicts, *([] if escalation is None else [escalation])]
    paid = [v for v in called if not v.spent_elsewhere]
    total: dict[str, Any] = {name: _sum(getattr(v, name) for v in paid) for name in _SUMMED}
    total.update(attempts=sum(v.attempts for v in paid if v.counts_call),
                 format_retries=sum(v.format_retries for v in paid if v.counts_call))
    scores: list[float] = [v.score for v in verdicts if v.ok]  # type: ignore[misc]
    info: dict[str, Any] = {
        **(extra or {}),
        "panel": [entry(label, v) for label, v in zip(plan.labels, verdicts, strict=True)],
        "aggregate": plan.aggregate, "members_ok": len(scores), "members": len(verdicts),
        "spread": spread(scores) if scores else None}
    if plan.escalate_to is not None:
        info["escalated"] = escalation is not None
    if escalation is not None:
        info["escalation"] = {**entry(str(plan.escalate_to), escalation),
                              "role": plan.escalation}
    fields = dict(backend=f"panel:{definition.name}", latency_s=latency_s,
                  cached=all(v.cached for v in called), metadata=metadata,
                  judge=definition.name, judge_version=definition.version, extra=info,
                  **total)
    if len(scores) < plan.min_members:
        failed = [(label, v) for label, v in zip(plan.labels, verdicts, strict=True)
                  if not v.ok]
        status = Counter(v.status for _, v in failed).most_common(1)[0][0]
        why = "; ".join(f"{label}: {v.status.value}: {v.error}" for label, v in failed)
        waits = [v.retry_after for _, v in failed if v.retry_after is not None]
        resets = [v.resets_at for _, v in failed if v.resets_at is not None]
        return Verdict.failure(
            status, f"panel {definition.name!r}: {len(scores)} of {len(verdicts)} members "
            f"ok, fewer than min_members = {plan.min_members} ({why})",
            retry_after=min(waits) if waits else None,
            resets_at=min(resets) if resets else None, **fields)
    if escalation is not None and escalation.ok:
        if plan.escalation == "decides":
            return Verdict(score=escalation.score, status=Status.OK, **fields)
        scores.append(escalation.score)  # type: ignore[arg-type]
    return Verdict(score=aggregate_scores(plan.aggregate, scores), status=Status.OK,
                   **fields)


def _sum(values: Any) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
