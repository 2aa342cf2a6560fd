"""Groups and comparisons in the judge actor: what to send, and how the answers come back.

A group is sent as one :class:`~ray_judge.verdict.GroupRequest` per chunk (one chunk
unless it is larger than the judge's ``max_group``, see :mod:`ray_judge.judging.groups.split`),
each a single item of the dispatcher: one slot, one backend call, one cache entry. The
worker answers a chunk with one Verdict per response in the chunk's order (it shuffles
for the judge and un-shuffles itself); :func:`assemble` maps chunks back onto the
caller's order and aligns split chunks on their anchor.

A comparison is a group of two under a pairwise judge, whose worker answers ``p`` for
the response shown first and ``1 - p`` for the other; with the swap it is sent in both
orders and :func:`compare_verdict` averages the two readings of ``a``.

Every number here comes from a judgement: a member whose chunk failed keeps its failure
(a split group's other chunks stay aligned on the chunks that did answer), and a
comparison with a failed order fails as a whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...verdict import GroupRequest, Status, Verdict
from .pairwise import DEFAULT_THRESHOLD, combine
from .split import SplitPlan

__all__ = ["GroupCounts", "assemble", "chunk_requests", "compare_verdict", "pair_requests"]


@dataclass
class GroupCounts:
    """Running totals for ``status()`` (the metrics count the same events)."""

    groups: int = 0
    members: int = 0
    calls: int = 0
    split: int = 0
    fallbacks: int = 0
    comparisons: int = 0
    inconsistent: int = 0

    @property
    def calls_saved(self) -> int:
        """Backend calls pointwise scoring would have made, minus those grouping made."""
        return self.members - self.calls

    def snapshot(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "calls_saved": self.calls_saved}


def chunk_requests(group: GroupRequest, max_group: int) -> tuple[SplitPlan, list[GroupRequest]]:
    """The plan for ``group`` and one request per chunk (the group itself when unsplit)."""
    plan = SplitPlan.for_size(len(group.responses), max_group)
    if not plan.split:
        return plan, [group]
    return plan, [dataclasses.replace(group, responses=tuple(group.responses[i] for i in chunk))
                  for chunk in plan.chunks]


def assemble(group: GroupRequest, plan: SplitPlan,
             results: Sequence[Sequence[Verdict]], counts: GroupCounts | None = None
             ) -> list[Verdict]:
    """One Verdict per response of ``group``, in the caller's order.

    ``results[j]`` are chunk ``j``'s Verdicts in the chunk's order. ``counts``, when
    given, is credited with this group's calls (not for answers from the cache).
    """
    if counts is not None:
        _count(plan, results, counts)
    if not plan.split:
        return list(results[0])
    answered = [j for j, verdicts in enumerate(results)
                if all(v.ok and "fallback" not in v.extra for v in verdicts)]
    out: list[Verdict | None] = [None] * plan.size
    if answered:
        aligned = SplitPlan(plan.size, plan.max_group,
                            tuple(plan.chunks[j] for j in answered), plan.anchor)
        combined = aligned.combine([[v.score for v in results[j]] for j in answered], 1.0)
        for j in answered:
            for index, verdict in zip(plan.chunks[j], results[j], strict=True):
                score, split = combined[index]
                extra = {**verdict.extra, "split": {
                    **split, "chunks": len(plan.chunks), "aligned": True,
                    "chunk": None if index == plan.anchor else j}}
                if index == plan.anchor:
                    extra["group"] = {**verdict.extra.get("group", {}), "index": index}
                out[index] = verdict.with_(score=score, extra=extra)
    for j, verdicts in enumerate(results):
        for index, verdict in zip(plan.chunks[j], verdicts, strict=True):
            if out[index] is None:
                note = {"chunks": len(plan.chunks), "chunk": j, "anchor": plan.anchor,
                        "aligned": False}
                out[index] = verdict.with_(extra={**verdict.extra, "split": note})
    return [_in_caller_group(v, i) for i, v in enumerate(out)]  # type: ignore[arg-type]


def _in_caller_group(verdict: Verdict, index: int) -> Verdict:
    # A chunk's "index" is its own; the caller's is the one that counts.
    group = verdict.extra.get("group")
    if not isinstance(group, dict):
        return verdict
    return verdict.with_(extra={**verdict.extra, "group": {**group, "chunk_index":
                                                           group.get("index"),
                                                           "index": index}})


def _count(plan: SplitPlan, results: Sequence[Sequence[Verdict]], counts: GroupCounts) -> None:
    if all(v.spent_elsewhere for verdicts in results for v in verdicts):
        return
    counts.groups += 1
    counts.members += plan.size
    counts.split += int(plan.split)
    for verdicts in results:
        fallback = sum(1 for v in verdicts if "fallback" in v.extra)
        counts.calls += 0 if all(v.spent_elsewhere for v in verdicts) else 1 + fallback
        counts.fallbacks += int(fallback > 0)


def pair_requests(pair: GroupRequest, *, swap: bool,
                  first_is_a: bool = True) -> list[GroupRequest]:
    """The comparison ``pair`` (its responses: a, b) as pair calls: ``(a, b)`` and
    ``(b, a)`` with the swap, else one order (``first_is_a`` says which)."""
    ab = pair
    ba = dataclasses.replace(pair, responses=pair.responses[::-1])
    if swap:
        return [ab, ba]
    return [ab if first_is_a else ba]


def compare_verdict(results: Sequence[Sequence[Verdict]], *, swap: bool,
                    first_is_a: bool = True, threshold: float = DEFAULT_THRESHOLD,
                    metadata: Any = None, counts: GroupCounts | None = None) -> Verdict:
    """One Verdict whose score is the preference for ``a``, from the pair calls' answers.

    Each call's Verdicts are (first shown, second shown); the first's score is the
    judge's preference for it.
    """
    calls = [list(verdicts) for verdicts in results]
    firsts = [verdicts[0] for verdicts in calls]
    usage = _usage(firsts, [v for verdicts in calls for v in verdicts])
    stamp = {"judge": firsts[0].judge, "judge_version": firsts[0].judge_version}
    raw = "\n\n".join(f"[{order}]\n{v.raw}" for order, v in
                      zip(_orders(swap, first_is_a), firsts, strict=True) if v.raw is not None)
    if counts is not None:
        counts.comparisons += 1
    failed = next((v for v in firsts if not v.ok), None)
    if failed is not None:
        return Verdict.failure(failed.status, failed.error or failed.status.value,
                               raw=raw or None, metadata=metadata,
                               extra={"swap": swap}, **usage, **stamp)
    if swap:
        outcome = combine(firsts[0].score, firsts[1].score, threshold)
        extra = {"swap": True, "position_consistent": outcome.consistent,
                 "orders": {"a_first": outcome.orders[0], "b_first": outcome.orders[1]},
                 "gap": outcome.gap, "threshold": threshold}
        if counts is not None and not outcome.consistent:
            counts.inconsistent += 1
        score = outcome.score
    else:
        # a's own Verdict in the single call: first or second shown
        score = calls[0][0 if first_is_a else 1].score
        extra = {"swap": False, "a_shown_first": first_is_a}
    return Verdict(score=score, status=Status.OK, raw=raw or None, metadata=metadata,
                   extra=extra, **usage, **stamp)


def _orders(swap: bool, first_is_a: bool) -> list[str]:
    if swap:
        return ["a first", "b first"]
    return ["a first" if first_is_a else "b first"]


def _usage(firsts: Sequence[Verdict], every: Sequence[Verdict]) -> dict[str, Any]:
    # A call's tokens and cost are shared out over its members: sum them all.
    def total(name: str) -> Any:
        values = [getattr(v, name) for v in every if getattr(v, name) is not None]
        return sum(values) if values else None

    first = firsts[0]
    return {"backend": first.backend, "model": first.model,
            "latency_s": max(v.latency_s for v in firsts),
            "attempts": sum(v.attempts for v in firsts),
            "input_tokens": total("input_tokens"), "output_tokens": total("output_tokens"),
            "cost_usd": total("cost_usd"), "cache_read_tokens": total("cache_read_tokens"),
            "cache_write_tokens": total("cache_write_tokens"),
            "cached": all(v.cached for v in firsts)}
