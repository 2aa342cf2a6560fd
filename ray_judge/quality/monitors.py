"""The live quality monitors of the judge actor, behind one door for :class:`JudgeCore`:
canaries (:mod:`.canaries`) and length bias (:mod:`.length_bias`).

The core hands every served pointwise verdict to :meth:`QualityMonitors.observe` (before
calibration: the backend's own score), every served group call (a group, or its chunk of
``max_group``) with its verdicts to :meth:`QualityMonitors.observe_group`, and merges
:meth:`QualityMonitors.snapshot` into its status. Metrics go through a duck-typed sink
(:class:`QualityMetrics`), so this layer does not import the pool above it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..config import JudgeConfig
from ..judging.catalog import JudgeCatalog
from ..verdict import GroupRequest, JudgeRequest, Verdict
from .canaries import ECHO, EMPTY, MASTER_KEYS, CanaryMonitor, SendSpare, Tally
from .length_bias import LengthBias, LengthStats

__all__ = ["QualityMetrics", "QualityMonitors", "canary_answers"]

logger = logging.getLogger(__name__)

class QualityMetrics(Protocol):
    """Where the monitors' figures go (:class:`ray_judge.pool.metrics.JudgeMetrics`)."""

    def record_canary(self, judge: str, backend: str, kind: str, *, result: str,
                      tally: Tally, verdict: Verdict) -> None: ...

    def set_length_bias(self, judge: str, backend: str, stats: LengthStats) -> None: ...


def canary_answers(definition: Any) -> dict[str, Any] | None:
    """A judge's known-bad answers, kind -> response, in the order they take turns (the
    prompt echo's response is filled per request); None when it gets no canaries (a
    pairwise judge: a known-bad answer has no place in a comparison of two)."""
    if definition.kind not in ("pointwise", "group") or not definition.canaries:
        return None
    keys = list(MASTER_KEYS.items())
    answers: dict[str, Any] = dict(keys[:5])
    answers[EMPTY] = ""
    answers[ECHO] = None
    answers.update(keys[5:])
    for number, answer in enumerate(definition.canary_answers, start=1):
        answers[f"file_{number}"] = answer
    return answers


class QualityMonitors:
    """Canaries and length bias of one judge actor.

    Args:
        config: the settings (``canary_*``, ``length_bias_*``, ``shift_share``).
        catalog: the judges (whether each gets canaries, its own known-bad answers).
        send_spare: :meth:`Dispatcher.send_spare`.
        serving: the backend new requests go to now.
        metrics: where the figures go.
    """

    def __init__(self, config: JudgeConfig, catalog: JudgeCatalog, *, send_spare: SendSpare,
                 serving: Callable[[], str | None], metrics: QualityMetrics) -> None:
        self._catalog = catalog
        self._answers: dict[str, dict[str, Any] | None] = {}
        self.canaries = CanaryMonitor(
            share=config.canary_share, pass_above=config.canary_pass,
            warn=config.canary_warn, answers_of=self._answers_of, send_spare=send_spare,
            serving=serving, on_result=metrics.record_canary,
            # background work's share of the backend, as the shift re-judging's
            lanes_for=lambda spec: int(config.shift_share * config.max_in_flight(spec)))
        self.length_bias = LengthBias(config.length_bias_window, config.length_bias_warn,
                                      config.length_bias_min, on_stats=metrics.set_length_bias)

    def observe(self, request: JudgeRequest, verdict: Verdict) -> None:
        """A pointwise verdict served to a caller (as its backend gave it)."""
        judge = request.judge or "default"
        try:
            self._lengths(judge, [request.response], [verdict])
            self.canaries.offer(judge, request, verdict)
        except Exception:  # a monitor must never cost a caller its verdict or calibration
            logger.exception("the quality monitors failed on a verdict of judge %s", judge)

    def observe_group(self, group: GroupRequest, verdicts: Sequence[Verdict]) -> None:
        """A group call served to a caller: each response's length and score, and the
        call for a canary."""
        judge = group.judge or "default"
        try:
            self._lengths(judge, group.responses, verdicts)
            self.canaries.offer_group(judge, group, verdicts)
        except Exception:  # a monitor must never cost a caller its verdicts
            logger.exception("the quality monitors failed on a group of judge %s", judge)

    def observe_panel(self, request: JudgeRequest | GroupRequest,
                      verdicts: Sequence[Verdict]) -> None:
        """A panel's verdicts served to a caller (backend ``panel:<judge>``): lengths and
        scores only. No canary: one would need every member's spare capacity at once, and
        each member's own judgements of a canary are what the members' judges show."""
        judge = request.judge or "default"
        responses = (request.responses if isinstance(request, GroupRequest)
                     else [request.response])
        try:
            self._lengths(judge, responses, verdicts)
        except Exception:  # a monitor must never cost a caller its verdicts
            logger.exception("the quality monitors failed on a panel of judge %s", judge)

    def _lengths(self, judge: str, responses: Sequence[Any],
                 verdicts: Sequence[Verdict]) -> None:
        for response, verdict in zip(responses, verdicts, strict=True):
            if verdict.ok and verdict.score is not None and verdict.backend \
                    and not verdict.cached:
                self.length_bias.observe(judge, verdict.backend, response, verdict.score)

    def snapshot(self) -> dict[str, Any]:
        """``{"canaries": ..., "length_bias": ...}`` for ``status()``."""
        return {"canaries": self.canaries.snapshot(), "length_bias": self.length_bias.snapshot()}

    async def aclose(self) -> None:
        await self.canaries.aclose()

    def _answers_of(self, judge: str) -> dict[str, Any] | None:
        if judge not in self._answers:
            try:
                self._answers[judge] = canary_answers(self._catalog.get(judge))
            except ValueError:  # not a judge of this catalog
                self._answers[judge] = None
        return self._answers[judge]
