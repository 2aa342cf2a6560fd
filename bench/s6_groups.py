"""Scenario 6: a GRPO step, P prompts x K responses: judge calls and wall time, pointwise
vs grouped.

The same step is scored twice through the pool, each time with one ``score_batch`` call
from this process: pointwise (P x K items, the baseline) and grouped (P group items, the
``group`` judge: one backend call per group). Against the fake OpenAI provider through
LiteLLM and, when there is one, through the real Claude Code CLI against the fake
Messages API. The fake answers every call with a text that reads both ways (a
``SCORE: N`` line and a ``{"scores": [...]}`` object), so only the number of calls and
their size differ. "calls" are the judge calls the fake provider received (requests
with a PROMPT data block: the CLI's own requests, if any, are not counted).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.cluster import ccode_env, litellm_env
from bench.context import Context
from bench.report import Row, Target


def _answer(k: int) -> str:
    scores = ", ".join(str(5 + i % 5) for i in range(k))
    return f'Each graded.\n{{"scores": [{scores}]}}\nSCORE: 7'


def run(ctx: Context) -> None:
    from ray_judge.testing import Behaviour

    n_prompts, k = ctx.sizes.s6_prompts, ctx.sizes.s6_k
    fake = ctx.fake(0.0)
    fake.set_default(Behaviour.ok(_answer(k)))
    try:
        # the judge calls are counted: no canary calls among them (scenario 1 has those)
        cases = [("LiteLLM", litellm_env(fake.url, ctx.work, "openai/bench-judge",
                                         LLM_JUDGE_NUM_WORKERS=str(ctx.workers),
                                         LLM_JUDGE_CANARY_SHARE="0"))]
        if ctx.cli is not None:
            cases.append(("Claude Code CLI", ccode_env(
                fake.url, ctx.work, ctx.cli, LLM_JUDGE_NUM_WORKERS=str(ctx.workers),
                LLM_JUDGE_TIMEOUT="120", LLM_JUDGE_DEADLINE="900", LLM_JUDGE_CANARY_SHARE="0")))
        else:
            ctx.report.skipped["6: Claude Code CLI"] = "no Claude Code CLI"
        for name, env in cases:
            judge = ctx.ray().start_judge(env, warm=_pointwise(2, 1, f"warm-{name}"))
            base = ctx.report.add(_measure(ctx, fake, judge, name, n_prompts, k, False))
            grouped = ctx.report.add(_measure(ctx, fake, judge, name, n_prompts, k, True))
            ctx.report.relate("6", base, [grouped])
            calls = grouped.extra["backend_calls"]
            ctx.report.targets.append(Target(
                "6", f"{name}: judge calls for {n_prompts} groups of {k}",
                f"== {n_prompts}", calls, calls == n_prompts))
            ctx.ray().stop_judge()
    finally:
        fake.set_default(Behaviour())


def _pointwise(n_prompts: int, k: int, tag: str) -> list[dict[str, Any]]:
    return [{"prompt": f"Solve task {p}. [{tag}]", "response": f"Answer {j} to task {p}.",
             "reference": str(p)} for p in range(n_prompts) for j in range(k)]


def _grouped(n_prompts: int, k: int, tag: str) -> list[dict[str, Any]]:
    return [{"prompt": f"Solve task {p}. [{tag}]", "reference": str(p),
             "responses": [f"Answer {j} to task {p}." for j in range(k)]}
            for p in range(n_prompts)]


def _measure(ctx: Context, fake: Any, judge: Any, name: str, n_prompts: int, k: int,
             grouped: bool) -> Row:
    ray = ctx.ray().ray
    tag = f"{name}-{'grouped' if grouped else 'pointwise'}-{time.time_ns()}"
    items = _grouped(n_prompts, k, tag) if grouped else _pointwise(n_prompts, k, tag)
    seen = len(fake.requests())
    cpu0, t0 = ctx.pool_cpu(), time.perf_counter()
    out = ray.get(judge.score_batch.remote(items), timeout=1800)
    wall, cpu = time.perf_counter() - t0, ctx.pool_cpu() - cpu0
    calls = sum(1 for r in fake.requests()[seen:]
                if r.body is not None and "<<<BEGIN PROMPT>>>" in json.dumps(r.body))
    verdicts = [v for item in out for v in (item if isinstance(item, list) else [item])]
    ok = sum(1 for v in verdicts if v.ok)
    status = ray.get(judge.status.remote(), timeout=60)
    how = f"grouped ({n_prompts} groups)" if grouped else f"pointwise ({len(items)} items)"
    return Row("6", f"{name}: {n_prompts} prompts x {k}, {how}", baseline=not grouped,
               n=len(verdicts), ok=ok, wall_s=wall, rate=ok / wall, unit="verdicts/s",
               cpu_s_per_req=cpu / len(verdicts),
               note=f"{calls} backend calls; calls saved so far "
                    f"{status['groups']['calls_saved']}",
               extra={"backend_calls": calls, "groups": status["groups"]})
