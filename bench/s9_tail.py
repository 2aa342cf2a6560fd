"""Scenario 9: GRPO steps against a provider with a heavy latency tail, hedging off and on.

A synchronous RL step waits for its last reward. The fake provider (its own process)
answers in 0.2 s, but 2% of its calls take 6 s more, drawn from a seeded generator: each
mode gets a fresh fake with the same seed. Each step is one ``score_batch`` of P prompts x
K responses through the pool (real worker actors, LiteLLM's lean transport), with an
in-flight limit above the step's size so concurrency does not limit. The same steps run
with ``LLM_JUDGE_HEDGE=off`` (the baseline) and with hedging at its defaults (1.5 x the
p90 of recent latency, at most 5% of requests).

"rate" is the median step time over the median verdict latency (lower is better: 1.0
would be a step that costs one typical verdict); the note gives provider calls per
verdict and what status() counted of hedges.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from bench.cluster import RAY_ENV, litellm_env
from bench.context import Context
from bench.report import Row, Target

LATENCY_S, TAIL_P, TAIL_S, SEED = 0.2, 0.02, 6.0, 27


def run(ctx: Context) -> None:
    from ray_judge.testing import FakeLLMProcess

    n_prompts, k, steps = ctx.sizes.s9_prompts, ctx.sizes.s9_k, ctx.sizes.s9_steps
    rows = []
    for hedge in ("off", "on"):
        fake = FakeLLMProcess(latency_s=LATENCY_S, tail_p=TAIL_P, tail_s=TAIL_S, seed=SEED,
                              env={**os.environ, **RAY_ENV}).start()
        try:
            env = litellm_env(fake.url, ctx.work, "openai/tail-judge",
                              LLM_JUDGE_NUM_WORKERS=str(ctx.workers), LLM_JUDGE_HEDGE=hedge,
                              LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=str(2 * n_prompts * k),
                              LLM_JUDGE_CACHE_SIZE="0",
                              # provider calls are counted: none of them canaries (about
                              # 1% more calls; scenario 1 measures them)
                              LLM_JUDGE_CANARY_SHARE="0")
            judge = ctx.ray().start_judge(env, warm=_step(4, 8, f"warm-{hedge}"))
            rows.append(ctx.report.add(_measure(ctx, fake, judge, hedge, n_prompts, k, steps)))
            ctx.ray().stop_judge()
        finally:
            fake.stop()
    off, on = rows
    ctx.report.relate("9", off, [on])
    ctx.report.targets += [
        Target("9", "step time over the median verdict latency, hedging on", "<= 3x",
               on.rate, on.rate is not None and on.rate <= 3.0),
        Target("9", "extra provider calls from hedging", "<= 6%",
               100 * on.extra["extra_calls"], on.extra["extra_calls"] <= 0.06),
    ]


def _step(n_prompts: int, k: int, tag: str) -> list[dict[str, Any]]:
    return [{"prompt": f"Solve task {p}. [{tag}]", "response": f"Answer {j} to task {p}.",
             "reference": str(p)} for p in range(n_prompts) for j in range(k)]


def _measure(ctx: Context, fake: Any, judge: Any, hedge: str, n_prompts: int, k: int,
             steps: int) -> Row:
    ray = ctx.ray().ray
    step_s, latencies, verdicts, calls = [], [], 0, 0
    ok = 0
    for s in range(steps):
        items = _step(n_prompts, k, f"{hedge}-{s}-{time.time_ns()}")
        before = fake.model_calls()
        t0 = time.perf_counter()
        out = ray.get(judge.score_batch.remote(items), timeout=1800)
        step_s.append(time.perf_counter() - t0)
        calls += fake.model_calls() - before
        verdicts += len(out)
        ok += sum(v.ok for v in out)
        latencies += [v.latency_s for v in out if v.ok]
    hedging = ray.get(judge.status.remote(), timeout=60)["hedging"]
    median_step, median_verdict = statistics.median(step_s), statistics.median(latencies)
    stats = fake.stats()
    return Row("9", f"{steps} steps of {n_prompts} x {k}, hedging {hedge}",
               baseline=hedge == "off", n=verdicts, ok=ok, wall_s=sum(step_s),
               rate=median_step / median_verdict, unit="x median verdict",
               p50_s=median_verdict, p99_s=max(step_s),
               note=(f"median step {median_step:.2f}s (slowest {max(step_s):.2f}s), median "
                     f"verdict {median_verdict:.2f}s; {calls / verdicts:.3f} provider calls "
                     f"per verdict; {stats['tails']} tail draws; hedges sent "
                     f"{hedging['sent']}, won {hedging['won']}"),
               extra={"median_step_s": median_step, "median_verdict_s": median_verdict,
                      "step_s": step_s, "calls_per_verdict": calls / verdicts,
                      "extra_calls": calls / verdicts - 1, "hedging": hedging,
                      "tails": stats["tails"]})
