"""Judge labelled cases on several backends at once, through any judge that takes
``backend=`` per request: the running judge actor, or a :class:`~ray_judge.pool.core.JudgeCore`
in this process.

Every (backend, sample) pass is ``score_batch`` calls of up to :data:`CHUNK` single and
group cases plus one ``compare`` call per comparison; at most :data:`MAX_CALLS` calls
are in flight at a time, so a large file neither floods the judge's queue ahead of a
training run nor starts a call long before the judge can get to it (a judge's
timeout runs from the call's start). Within that, the judge's own queue, limits and
cache decide the pace. A call that raises does not stop the eval: its cases get failed
verdicts saying why (never a score).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ..verdict import Status, Verdict
from .cases import Case
from .metrics import Judged, thresholds

__all__ = ["CHUNK", "MAX_CALLS", "CaseJudge", "judge_cases"]

#: Most cases per ``score_batch`` call.
CHUNK = 64
#: Most calls in flight at once, over every backend and sample.
MAX_CALLS = 8


class CaseJudge(Protocol):
    """What :func:`judge_cases` needs of a judge (the actor's and the core's methods)."""

    def score_batch(self, items: list[dict[str, Any]]) -> Awaitable[list[Any]]: ...

    def compare(self, **kwargs: Any) -> Awaitable[Verdict]: ...


async def judge_cases(judge: CaseJudge, cases: Sequence[Case], backends: Sequence[str], *,
                      samples: int = 1, threshold: float | None = None
                      ) -> dict[str, list[Judged]]:
    """Each backend's verdicts on every case, ``samples`` per case (sample k is asked
    with ``sample=k``, so each is a judgement of its own, not a cache hit)."""
    if samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    passes = [(backend, k) for backend in backends for k in range(samples)]
    calls = asyncio.Semaphore(MAX_CALLS)
    results = await asyncio.gather(*(_one_pass(judge, cases, b, k, calls)
                                     for b, k in passes))
    out: dict[str, list[Judged]] = {}
    for backend in backends:
        by_sample = [r for (b, _), r in zip(passes, results, strict=True) if b == backend]
        out[backend] = [Judged(case, [run[i] for run in by_sample],
                               thresholds(case, threshold))
                        for i, case in enumerate(cases)]
    return out


async def _one_pass(judge: CaseJudge, cases: Sequence[Case], backend: str,
                    sample: int, limit: asyncio.Semaphore) -> list[Any]:
    pinned = {"backend": backend, "sample": sample}
    batched = [i for i, c in enumerate(cases) if c.kind != "compare"]
    compared = [i for i, c in enumerate(cases) if c.kind == "compare"]
    groups = [batched[at:at + CHUNK] for at in range(0, len(batched), CHUNK)]
    calls = [_guard(lambda g=g: judge.score_batch([{**cases[i].item, **pinned} for i in g]),
                    [cases[i] for i in g], backend, limit) for g in groups]
    calls += [_guard(lambda i=i: _single(judge.compare(**cases[i].item, **pinned)),
                     [cases[i]], backend, limit) for i in compared]
    groups += [[i] for i in compared]
    answers = await asyncio.gather(*calls)
    out: list[Any] = [None] * len(cases)
    for indices, answer in zip(groups, answers, strict=True):
        for i, result in zip(indices, answer, strict=True):
            out[i] = result
    return out


async def _single(call: Awaitable[Verdict]) -> list[Verdict]:
    return [await call]


async def _guard(call: Callable[[], Awaitable[list[Any]]], cases: list[Case], backend: str,
                 limit: asyncio.Semaphore) -> list[Any]:
    """The call's results, or a failed verdict per case (a list per group) saying why;
    the call is made once ``limit`` lets it."""
    try:
        async with limit:
            results = list(await call())
    except Exception as exc:
        why = f"the judge call failed: {type(exc).__name__}: {exc}"
        status = Status.TIMEOUT if isinstance(exc, asyncio.TimeoutError) else Status.BACKEND_ERROR
        failed = Verdict.failure(status, why, backend=backend)
        return [[failed] * len(c.item["responses"]) if c.kind == "group" else failed
                for c in cases]
    if len(results) != len(cases):
        raise RuntimeError(f"the judge returned {len(results)} results for {len(cases)} cases")
    return results
