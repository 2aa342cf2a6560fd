"""Judge panels: several backends judge each request together (issue 23).

A judge whose definition has ``panel = [...]`` (:mod:`ray_judge.judging.panel`) is
judged here rather than by one backend. Each request goes to every member at once as a
pinned request (:mod:`.pinning`: that backend's own dispatcher lane, its global limits,
the verdict cache, no reroute); the ``"@current"`` member is an unpinned request, so it
goes wherever the override file and the failover chain send training traffic at that
moment. Every member judges the same rendered prompt with the definition's templates,
parser, scale and correction turns.

The panel's Verdict:

- ``score``: the ``aggregate`` (mean, median or majority) of the ok members' scores; a
  failed member is listed, never averaged in. Fewer than ``min_members`` ok: the verdict
  fails, with the commonest member failure as its status and an error naming each
  failed member.
- ``extra["panel"]``: each member's backend, model, score, status, error, cost, latency
  and whether it came from the cache; ``cost_usd``, tokens and attempts sum the members'
  calls (cache hits cost nothing again). ``latency_s`` is the panel's wall time: its
  slowest member (plus the escalation call when there was one).
- Escalation: when the ok members' scores spread more than ``escalate_when`` (or a
  majority vote ties), ``escalate_to`` judges too and decides (``escalation =
  "decides"``; if it fails, the members' aggregate stands) or joins the aggregate.
  ``extra["escalated"]`` says whether it did.

No panel verdict is cached as a whole: it is assembled from member verdicts whose cache
keys name each member's backend as resolved (``@current`` included), so after a switch
the ``@current`` member is asked afresh and no panel verdict of the old membership is
served. A request with ``backend=`` of a panel judge is judged by that one backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.judgement import aggregate_scores
from ..judging.panel import Panel, spread
from ..quality.agreement import agreement
from ..spec import BackendSpec
from ..verdict import JudgeRequest, Status, Verdict
from .cache import Result
from .items import Request
from .panel_metrics import AGREEMENT_EVERY, PanelMetrics
from .pinning import Pin

__all__ = ["ESCALATION", "WINDOW", "Panels"]

logger = logging.getLogger(__name__)

#: The rolling window of verdicts per panel judge that agreement is measured over.
WINDOW = 1000
#: How the escalation backend is named among a panel's members in status().
ESCALATION = "escalation"

Submit = Callable[[Sequence[Request], BackendSpec | None, int], list["asyncio.Future[Result]"]]
SubmitPinned = Callable[[Sequence[Request], Sequence[Pin]], list[Awaitable[Result]]]
_SUMMED = ("input_tokens", "output_tokens", "cost_usd", "cache_read_tokens",
           "cache_write_tokens")


class Panels:
    """Convenes panels for the core and keeps each panel judge's rolling window.

    Args:
        submit: the dispatcher's ``submit(requests, backend, sample)``.
        catalog: the judges, to tell a panel judge's request from another.
        metrics: the panel instruments (None: none).
        clock: monotonic seconds (the panel's wall time).
    """

    def __init__(self, submit: Submit, catalog: JudgeCatalog, *,
                 metrics: PanelMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic, window: int = WINDOW) -> None:
        self._submit = submit
        self._catalog = catalog
        self._metrics = metrics
        self._clock = clock
        self._windows = {d.name: _Window(d.panel_plan, window) for d in catalog
                         if d.panel_plan is not None}

    def convenes(self, request: Request, pin: Pin) -> bool:
        """Whether ``request`` is judged by a panel (a panel judge's, not pinned)."""
        return (not pin.pinned and isinstance(request, JudgeRequest)
                and request.judge in self._windows)

    def submit(self, requests: Sequence[Request], pins: Sequence[Pin],
               others: SubmitPinned) -> list[Awaitable[Result]]:
        """Each request's result: a panel's for panel requests, ``others``' for the rest."""
        out: list[Awaitable[Result] | None] = [None] * len(requests)
        rest = []
        for i, (request, pin) in enumerate(zip(requests, pins, strict=True)):
            if self.convenes(request, pin):
                out[i] = asyncio.ensure_future(self.judge(request, pin.sample))  # type: ignore[arg-type]
            else:
                rest.append(i)
        for i, future in zip(rest, others([requests[i] for i in rest],
                                          [pins[i] for i in rest]), strict=True):
            out[i] = future
        return out  # type: ignore[return-value]

    async def judge(self, request: JudgeRequest, sample: int = 0) -> Verdict:
        """The panel verdict of ``request`` (its judge must be a panel judge)."""
        definition = self._catalog.get(request.judge)
        plan = definition.panel_plan
        assert plan is not None, f"judge {definition.name!r} is not a panel"
        started = self._clock()
        members = [self._submit([request], member, sample)[0] for member in plan.members]
        verdicts: list[Verdict] = list(await asyncio.gather(*members))  # type: ignore[arg-type]
        ok = [v.score for v in verdicts if v.ok]
        escalation = None
        if len(ok) >= plan.min_members and plan.escalates(ok):  # type: ignore[arg-type]
            (future,) = self._submit([request], plan.escalate_to, sample)
            escalation = await future
        verdict = _combine(definition, plan, verdicts, escalation, request,
                           latency_s=self._clock() - started)
        window = self._windows[definition.name]
        window.add(verdicts, escalation, verdict)
        if self._metrics is not None:
            try:
                self._metrics.record(definition.name, verdict, [
                    *zip(plan.labels, verdicts, strict=True),
                    *([] if escalation is None else [(ESCALATION, escalation)])])
                if window.verdicts % AGREEMENT_EVERY == 1:
                    self._metrics.set_agreement(definition.name, window.agreement())
            except Exception:  # metrics must never cost a caller its verdict
                logger.exception("recording a panel verdict's metrics failed")
        return verdict

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """judge name -> its members, counts, escalation rate, cost and call shares and
        agreement over the window, for ``status()["panels"]``."""
        out = {name: window.snapshot() for name, window in self._windows.items()}
        if self._metrics is not None:  # the gauges move whenever someone looks, too
            for name, snapshot in out.items():
                self._metrics.set_agreement(name, snapshot["agreement"])
        return out


def _entry(label: str, verdict: Verdict) -> dict[str, Any]:
    return {"member": label, "backend": verdict.backend, "model": verdict.model,
            "score": verdict.score, "status": verdict.status.value, "error": verdict.error,
            "cost_usd": verdict.cost_usd, "latency_s": round(verdict.latency_s, 4),
            "cached": verdict.cached}


def _combine(definition: JudgeDefinition, plan: Panel, verdicts: list[Verdict],
             escalation: Verdict | None, request: JudgeRequest, *,
             latency_s: float) -> Verdict:
    called = [*verdicts, *([] if escalation is None else [escalation])]
    paid = [v for v in called if not v.spent_elsewhere]
    total: dict[str, Any] = {name: _sum(getattr(v, name) for v in paid) for name in _SUMMED}
    total.update(attempts=sum(v.attempts for v in paid),
                 format_retries=sum(v.format_retries for v in paid))
    scores = [v.score for v in verdicts if v.ok]
    extra: dict[str, Any] = {
        "panel": [_entry(label, v) for label, v in zip(plan.labels, verdicts, strict=True)],
        "aggregate": plan.aggregate, "members_ok": len(scores), "members": len(verdicts),
        "spread": spread(scores) if scores else None}  # type: ignore[arg-type]
    if plan.escalate_to is not None:
        extra["escalated"] = escalation is not None
    if escalation is not None:
        extra["escalation"] = {**_entry(str(plan.escalate_to), escalation),
                               "role": plan.escalation}
    fields = dict(backend=f"panel:{definition.name}", latency_s=latency_s,
                  cached=all(v.cached for v in called), metadata=request.metadata,
                  judge=definition.name, judge_version=definition.version, extra=extra,
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
        scores.append(escalation.score)
    return Verdict(score=aggregate_scores(plan.aggregate, scores),  # type: ignore[arg-type]
                   status=Status.OK, **fields)


def _sum(values: Any) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


class _Window:
    """One panel judge's recent verdicts, counts and spend per member."""

    def __init__(self, plan: Panel, size: int) -> None:
        self.plan = plan
        self.rows: deque[tuple[dict[str, float], float | None]] = deque(maxlen=size)
        self.verdicts = self.failed = self.escalated = 0
        names = [*plan.labels, *([ESCALATION] if plan.escalate_to is not None else [])]
        self.calls = dict.fromkeys(names, 0)
        self.cost = dict.fromkeys(names, 0.0)

    def add(self, verdicts: list[Verdict], escalation: Verdict | None,
            verdict: Verdict) -> None:
        self.verdicts += 1
        self.failed += not verdict.ok
        self.escalated += escalation is not None
        pairs = list(zip(self.plan.labels, verdicts, strict=True))
        if escalation is not None:
            pairs.append((ESCALATION, escalation))
        for label, v in pairs:
            if not v.spent_elsewhere:
                self.calls[label] += 1
                self.cost[label] += v.cost_usd or 0.0
        self.rows.append(({label: v.score for label, v in pairs[:len(verdicts)]
                           if v.ok and v.score is not None}, verdict.score))

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

    def agreement(self) -> dict[str, Any]:
        return agreement([r for r, _ in self.rows], [p for _, p in self.rows],
                         self.plan.labels)
