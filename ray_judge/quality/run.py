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

The column :data:`PANEL` is the judge as it serves: a panel judge's cases go to their
panel (``backend="@panel"``: every member in a lane of its own, as any eval request),
the other cases to the serving backend. When every case names a
panel judge with the same members, each member gets a column of its own beside the
panel, read from the panel verdicts' ``extra["panel"]``: the very judgements the panel
combined, at no extra call (members asked again would answer from the cache, at no
cost, and misstate what they cost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from ..judging.panel import CURRENT, PANEL
from ..verdict import Status, Verdict
from .cases import Case
from .metrics import Judged, thresholds

__all__ = ["CHUNK", "MAX_CALLS", "PANEL", "CaseJudge", "judge_cases", "member_columns"]

#: Most cases per ``score_batch`` call.
CHUNK = 64
#: Most calls in flight at once, over every backend and sample.
MAX_CALLS = 8


class CaseJudge(Protocol):
    """What :func:`judge_cases` needs of a judge (the actor's and the core's methods)."""

    def score_batch(self, items: list[dict[str, Any]]) -> Awaitable[list[Any]]: ...

    def compare(self, **kwargs: Any) -> Awaitable[Verdict]: ...


async def judge_cases(judge: CaseJudge, cases: Sequence[Case], backends: Sequence[str], *,
                      samples: int = 1, threshold: float | None = None,
                      panels: Mapping[str, Sequence[str]] | None = None,
                      serving: str | None = None) -> dict[str, list[Judged]]:
    """Each backend's verdicts on every case, ``samples`` per case (sample k is asked
    with ``sample=k``, so each is a judgement of its own, not a cache hit).

    ``backends`` may hold :data:`PANEL`; ``panels`` then names the panel judges (judge
    name -> member labels) and ``serving`` the backend the other cases go to. Member
    columns follow the panel's when :func:`member_columns` finds them."""
    if samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    panels = panels or {}
    if PANEL in backends and serving is None and any(c.judge not in panels for c in cases):
        raise ValueError(f"the {PANEL} column needs the serving backend for the cases of "
                         "judges that are not panels")
    passes = [(backend, k) for backend in backends for k in range(samples)]
    calls = asyncio.Semaphore(MAX_CALLS)
    results = await asyncio.gather(*(
        _one_pass(judge, cases, b, _pins(b, k, panels, serving), calls) for b, k in passes))
    out: dict[str, list[Judged]] = {}
    for backend in backends:
        by_sample = [r for (b, _), r in zip(passes, results, strict=True) if b == backend]
        columns = {backend: by_sample}
        if backend == PANEL:
            columns.update(member_columns(cases, by_sample, panels, taken=backends))
        for name, runs in columns.items():
            out[name] = [Judged(case, [run[i] for run in runs], thresholds(case, threshold))
                         for i, case in enumerate(cases)]
    return out


def member_columns(cases: Sequence[Case], runs: Sequence[Sequence[Any]],
                   panels: Mapping[str, Sequence[str]], taken: Sequence[str] = ()
                   ) -> dict[str, list[list[Any]]]:
    """Each panel member's results (per sample, per case) read from the panel verdicts
    in ``runs``, when every case names a panel judge with the same members; else none.
    A member's column is named by its label, ``@current`` with the backend it stood for;
    a name in ``taken`` (a backend judged on its own too) gets `` (in @panel)``."""
    labels = {tuple(panels.get(c.judge, ())) for c in cases}
    if len(labels) != 1 or not next(iter(labels)):
        return {}
    out: dict[str, list[list[Any]]] = {}
    for label in next(iter(labels)):
        column = [[_member_result(result, label) for result in run] for run in runs]
        backends = {v.backend for run in column for r in run
                    for v in (r if isinstance(r, list) else [r]) if v.ok}
        name = (f"{label} ({backends.pop()})" if label == CURRENT and len(backends) == 1
                else label)
        out[f"{name} (in {PANEL})" if name in taken else name] = column
    return out


def _member_result(result: Any, label: str) -> Any:
    if isinstance(result, (list, tuple)):
        return [_member_verdict(v, label) for v in result]
    return _member_verdict(result, label)


def _member_verdict(panel: Verdict, label: str) -> Verdict:
    """The member ``label``'s verdict inside ``panel``, or ``panel`` itself when it has
    none (a call that failed before the panel met: its failure is every member's)."""
    entry = next((e for e in panel.extra.get("panel", ()) if e.get("member") == label), None)
    if entry is None:
        return panel
    status = Status(entry["status"])
    return Verdict(score=entry["score"] if status is Status.OK else None, status=status,
                   error=entry.get("error"), backend=entry.get("backend"),
                   model=entry.get("model"), latency_s=entry.get("latency_s") or 0.0,
                   attempts=0 if entry.get("cached") else 1,
                   input_tokens=entry.get("input_tokens"),
                   output_tokens=entry.get("output_tokens"), cost_usd=entry.get("cost_usd"),
                   cached=bool(entry.get("cached")), metadata=panel.metadata,
                   judge=panel.judge, judge_version=panel.judge_version,
                   extra={"member_of": panel.backend})


def _pins(backend: str, sample: int, panels: Mapping[str, Sequence[str]],
          serving: str | None) -> Callable[[Case], dict[str, Any]]:
    """What a case's request adds in the pass of ``backend`` and ``sample``."""
    def pinned(case: Case) -> dict[str, Any]:
        if backend != PANEL:
            return {"backend": backend, "sample": sample}
        if case.judge in panels:
            return {"backend": PANEL, "sample": sample}  # the panel, in lanes of its own
        return {"backend": serving, "sample": sample}

    return pinned


async def _one_pass(judge: CaseJudge, cases: Sequence[Case], backend: str,
                    pinned: Callable[[Case], dict[str, Any]],
                    limit: asyncio.Semaphore) -> list[Any]:
    batched = [i for i, c in enumerate(cases) if c.kind != "compare"]
    compared = [i for i, c in enumerate(cases) if c.kind == "compare"]
    groups = [batched[at:at + CHUNK] for at in range(0, len(batched), CHUNK)]
    calls = [_guard(lambda g=g: judge.score_batch([{**cases[i].item, **pinned(cases[i])}
                                                   for i in g]),
                    [cases[i] for i in g], backend, limit) for g in groups]
    calls += [_guard(lambda i=i: _single(judge.compare(**cases[i].item, **pinned(cases[i]))),
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
