"""Labelled cases judged in the background, on a backend's spare capacity only.

What the validation on every switch sends: each case becomes the requests the judge
would make for it (one request, a group in chunks of the judge's ``max_group``, a
comparison in one or both orders), sent through ``send_spare``
(:meth:`~ray_judge.pool.dispatch.Dispatcher.send_spare`): nothing is sent while a
training request waits, and at most ``lanes`` cases are in flight at a time, as the shift
re-judging does. The answers come back as the results ``ray-judge eval`` reads
(a Verdict, or a group's list of them), so the same figures apply.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..judging.catalog import JudgeCatalog
from ..judging.groups.pairwise import first_is_a as first_shown
from ..judging.groups.planning import assemble, chunk_requests, compare_verdict, pair_requests
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest
from .cases import Case

__all__ = ["POLL_S", "SendSpare", "judge_on_spare"]

#: Seconds a lane waits before asking again when training requests hold every slot.
POLL_S = 0.2

SendSpare = Callable[[BackendSpec, Sequence[Any]], Awaitable[list[Any]]]


async def judge_on_spare(cases: Sequence[Case], spec: BackendSpec, catalog: JudgeCatalog,
                         send_spare: SendSpare, *, lanes: int,
                         keep_going: Callable[[], bool] = lambda: True,
                         on_done: Callable[[int], None] = lambda n: None) -> list[Any] | None:
    """Each case's result on ``spec``, in order; None when ``keep_going()`` turned False
    first (the backend stopped serving, the judge is closing). ``on_done(n)`` is told
    how many cases have answered so far."""
    results: list[Any] = [None] * len(cases)
    todo = deque(range(len(cases)))
    done = 0

    async def lane() -> None:
        nonlocal done
        while todo and keep_going():
            i = todo.popleft()
            result = await _judge_case(cases[i], spec, catalog, send_spare, keep_going)
            if result is None:
                todo.appendleft(i)
                return
            results[i] = result
            done += 1
            on_done(done)

    await asyncio.gather(*(lane() for _ in range(max(1, min(lanes, len(cases))))))
    return None if todo else results


async def _judge_case(case: Case, spec: BackendSpec, catalog: JudgeCatalog,
                      send_spare: SendSpare, keep_going: Callable[[], bool]) -> Any:
    item = dict(case.item)
    if case.kind == "score":
        (verdict,) = await _send(spec, [JudgeRequest.from_mapping(item)], send_spare,
                                 keep_going) or (None,)
        return verdict
    definition = catalog.get(case.judge)
    if case.kind == "group":
        group = GroupRequest.from_mapping({**item, "judge": case.judge})
        plan, chunks = chunk_requests(group, definition.max_group)
        answers = await _send(spec, chunks, send_spare, keep_going)
        if answers is None:
            return None
        return list(assemble(group, plan, [tuple(a) for a in answers]))
    prompt, a, b = item["prompt"], item["a"], item["b"]
    pair = GroupRequest(prompt, (a, b), item.get("reference"), judge=case.judge,
                        fields=item.get("fields"))
    first_is_a = first_shown(*(x if isinstance(x, str) else json.dumps(x, sort_keys=True)
                               for x in (prompt, a, b)), item.get("reference"))
    calls = pair_requests(pair, swap=definition.swap, first_is_a=first_is_a)
    answers = await _send(spec, calls, send_spare, keep_going)
    if answers is None:
        return None
    return compare_verdict([tuple(x) for x in answers], swap=definition.swap,
                           first_is_a=first_is_a)


async def _send(spec: BackendSpec, requests: list[Any], send_spare: SendSpare,
                keep_going: Callable[[], bool]) -> list[Any] | None:
    """All of ``requests`` answered, each when a slot is spare; None if stopped first."""
    out: list[Any] = []
    while len(out) < len(requests):
        if not keep_going():
            return None
        answered = await send_spare(spec, requests[len(out):len(out) + 1])
        if not answered:  # training requests are waiting: let them have it
            await asyncio.sleep(POLL_S)
            continue
        out.extend(answered)
    return out

