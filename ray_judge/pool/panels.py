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
  calls (cache hits cost nothing again). ``latency_s`` is, as for a single verdict, from
  dispatch to verdict: the slowest member's (members run at once), plus the escalation
  call's when there was one.
- Escalation: when the ok members' scores spread more than ``escalate_when`` (or a
  majority vote ties), ``escalate_to`` judges too and decides (``escalation =
  "decides"``; if it fails, the members' aggregate stands) or joins the aggregate.
  ``extra["escalated"]`` says whether it did.

No panel verdict is cached as a whole: it is assembled from member verdicts whose cache
keys name each member's backend as resolved (``@current`` included), so after a switch
the ``@current`` member is asked afresh and no panel verdict of the old membership is
served. A request with ``backend=`` of a panel judge is judged by that one backend;
with ``backend="@panel"`` (an eval) by the panel, each member in a lane of its own
(``@current`` as the backend serving at that moment), so it never queues ahead of
training requests; its verdicts stay out of the panel's window and metrics, which
describe what training got.

A *group* panel (a ``kind = "group"`` judge with ``panel``) has each member judge the
whole group (split per ``max_group`` as usual, shown in a shuffle of its own: the
worker seeds it with the member's backend) and combines the members' scores response
by response; when any response's scores spread too far, the escalation backend judges
the whole group and decides (or joins) every response, its scores being relative to each
other. A *pairwise* panel combines each member's preference for ``a`` (both orders when
the judge swaps) the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..judging.catalog import JudgeCatalog
from ..judging.groups.planning import assemble, chunk_requests, compare_verdict
from ..judging.panel import PANEL
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest, Verdict
from .cache import Result, stamped
from .items import Request
from .panel_metrics import AGREEMENT_EVERY, PanelMetrics
from .panel_verdict import combine
from .panel_window import ESCALATION, WINDOW, PanelWindow
from .pinning import NONE, Pin

__all__ = ["Panels"]

logger = logging.getLogger(__name__)

Submit = Callable[[Sequence[Request], BackendSpec | None, int], list["asyncio.Future[Result]"]]
SubmitPinned = Callable[[Sequence[Request], Sequence[Pin]], list[Awaitable[Result]]]
#: One member's answer to a request: a Verdict per position (one for a single response).
Ask = Callable[[BackendSpec | None], Awaitable[list[Verdict]]]


class Panels:
    """Convenes panels for the core and keeps each panel judge's rolling window.

    Args:
        submit: the dispatcher's ``submit(requests, backend, sample)``.
        catalog: the judges, to tell a panel judge's request from another.
        window: verdicts per panel judge that agreement is computed over.
        metrics: the panel instruments (None: none).
        serving: the backend serving now, for ``@current`` in lanes of their own (None:
            not known yet; the member then goes where training requests go).
        on_served: called with a caller's request and its panel verdicts (one per
            response) as they are served (not an eval's: ``backend="@panel"``); the
            quality monitors' length bias.
    """

    def __init__(self, submit: Submit, catalog: JudgeCatalog, window: int = WINDOW, *,
                 metrics: PanelMetrics | None = None,
                 serving: Callable[[], str | None] = lambda: None,
                 on_served: Callable[[Request, list[Verdict]], None] = lambda r, v: None
                 ) -> None:
        self._submit = submit
        self._catalog = catalog
        self._metrics = metrics
        self._serving = serving
        self._on_served = on_served
        self._windows = {d.name: PanelWindow(d.panel_plan, window) for d in catalog
                         if d.panel_plan is not None}

    def convenes(self, request: Request, pin: Pin) -> bool:
        """Whether ``request`` is judged by a panel (a panel judge's, not pinned);
        ValueError for ``backend="@panel"`` on another judge's request."""
        if pin.panel and request.judge not in self._windows:
            raise ValueError(f"backend={PANEL!r} is for the requests of panel judges; judge "
                             f"{request.judge or 'default'!r} is not one")
        return not pin.pinned and request.judge in self._windows

    def as_is(self, request: Request, pin: Pin) -> bool:
        """Whether a result goes back as it came: a pinned request's or a panel's (no
        shift sampling, no calibration: neither is the serving backend's own reward)."""
        return pin.pinned or self.convenes(request, pin)

    def submit(self, requests: Sequence[Request], pins: Sequence[Pin],
               others: SubmitPinned) -> list[Awaitable[Result]]:
        """Each request's result: a panel's for panel requests, ``others``' for the rest."""
        out: list[Awaitable[Result] | None] = [None] * len(requests)
        rest = []
        # every request checked before any is started: a bad one fails the call, unspent
        convened = [self.convenes(r, p) for r, p in zip(requests, pins, strict=True)]
        for i, (request, pin) in enumerate(zip(requests, pins, strict=True)):
            if not convened[i]:
                rest.append(i)
            elif isinstance(request, GroupRequest):
                out[i] = asyncio.ensure_future(self.judge_group(request, pin))
            else:
                out[i] = asyncio.ensure_future(self.judge(request, pin))
        for i, future in zip(rest, others([requests[i] for i in rest],
                                          [pins[i] for i in rest]), strict=True):
            out[i] = future
        return out  # type: ignore[return-value]

    async def judge(self, request: JudgeRequest, pin: Pin = NONE) -> Verdict:
        """The panel verdict of ``request`` (its judge must be a panel judge)."""
        async def ask(member: BackendSpec | None) -> list[Verdict]:
            (future,) = self._submit([request], self._lane(member, pin), pin.sample)
            return [await future]  # type: ignore[list-item]

        verdicts = await self._convene(request.judge, ask, [request.metadata], pin)
        if not pin.panel:
            self._on_served(request, verdicts)
        return verdicts[0]

    async def judge_group(self, group: GroupRequest, pin: Pin = NONE) -> list[Verdict]:
        """One panel verdict per response of ``group``: each member judges the group
        (split per ``max_group`` as usual) and each response's scores are combined."""
        definition = self._catalog.get(group.judge)
        split, chunks = chunk_requests(group, definition.max_group)

        async def ask(member: BackendSpec | None) -> list[Verdict]:
            results = await asyncio.gather(*self._submit(chunks, self._lane(member, pin),
                                                         pin.sample))
            return assemble(group, split, [stamped(r, definition) for r in results])

        verdicts = await self._convene(group.judge, ask, [group.metadata] * len(group.responses),
                                       pin)
        if not pin.panel:
            self._on_served(group, verdicts)
        return verdicts

    async def compare(self, pair: GroupRequest, calls: list[GroupRequest], *,
                      first_is_a: bool, pin: Pin = NONE) -> Verdict:
        """The panel's preference for ``a``: each member's (both orders when the judge
        swaps) combined like scores."""
        definition = self._catalog.get(pair.judge)

        async def ask(member: BackendSpec | None) -> list[Verdict]:
            results = await asyncio.gather(*self._submit(calls, self._lane(member, pin),
                                                         pin.sample))
            return [compare_verdict([stamped(r, definition) for r in results],
                                    swap=definition.swap, first_is_a=first_is_a,
                                    metadata=pair.metadata)]

        (verdict,) = await self._convene(pair.judge, ask, [pair.metadata], pin)
        return verdict

    def _lane(self, member: BackendSpec | None, pin: Pin) -> BackendSpec | None:
        """Where a member's request goes: its own backend's lane; ``@current`` with the
        training requests, or, for ``backend="@panel"``, in the serving backend's lane."""
        if member is not None or not pin.panel:
            return member
        serving = self._serving()
        return None if serving is None else BackendSpec.parse(serving)

    async def _convene(self, judge: str | None, ask: Ask, metadata: list[Any], pin: Pin
                       ) -> list[Verdict]:
        """Ask every member at once, escalate when they disagree, combine per position.
        A group escalates as a whole when any response's scores spread too far."""
        definition = self._catalog.get(judge)
        plan = definition.panel_plan
        assert plan is not None, f"judge {definition.name!r} is not a panel"
        answers = await asyncio.gather(*(ask(member) for member in plan.members))
        columns = [list(column) for column in zip(*answers, strict=True)]
        escalation: list[Verdict] | None = None
        if any(len(ok) >= plan.min_members and plan.escalates(ok) for ok in (
                [v.score for v in column if v.ok] for column in columns)):
            escalation = await ask(plan.escalate_to)
        out = []
        for i, column in enumerate(columns):
            extra = {"position": i} if len(columns) > 1 else None
            escalated = None if escalation is None else escalation[i]
            # as a single verdict's: from dispatch to verdict, here of the slowest member
            # (members run at once), then the escalation call's
            latency_s = max(v.latency_s for v in column) + (
                0.0 if escalated is None else escalated.latency_s)
            verdict = combine(definition, plan, column, escalated, latency_s=latency_s,
                              metadata=metadata[i], extra=extra)
            if not pin.panel:  # an eval's verdicts stay out of the window and the metrics
                self._record(definition.name, column, escalated, verdict)
            out.append(verdict)
        return out

    def _record(self, name: str, members: list[Verdict], escalation: Verdict | None,
                verdict: Verdict) -> None:
        window = self._windows[name]
        window.add(members, escalation, verdict)
        if self._metrics is None:
            return
        try:
            labelled = [*zip(window.plan.labels, members, strict=True),
                        *([] if escalation is None else [(ESCALATION, escalation)])]
            self._metrics.record(name, verdict, labelled)
            if window.verdicts % AGREEMENT_EVERY == 1:
                self._metrics.set_agreement(name, window.agreement())
        except Exception:  # metrics must never cost a caller its verdict
            logger.exception("recording a panel verdict's metrics failed")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """judge name -> its members, counts, escalation rate, cost and call shares and
        agreement over the window, for ``status()["panels"]``."""
        out = {name: window.snapshot() for name, window in self._windows.items()}
        if self._metrics is not None:  # the gauges move whenever someone looks, too
            for name, snapshot in out.items():
                self._metrics.set_agreement(name, snapshot["agreement"])
        return out

