"""Scenario 10: a judge panel of three against a single judge, in the same run.

One fake provider (its own process) answers every call in 50 ms. The same judge actor
serves a single judge (``default``, the baseline) and a panel judge of three members
(``@current`` and two more models of the fake, aggregate median, no escalation); each
mode judges one ``score_batch`` of N distinct requests (32, then 1,024: all in flight
at once, the in-flight limit above it, the verdict cache off). A panel verdict makes
three provider calls at once: at a light load its latency stays near one call's; when
the pool's CPU is the limit (1,024 in flight on two cores) it does three times the
work, and latency follows. The target: CPU per verdict at most 1.25x the single judge's
per member call (what the panel adds beyond its calls).

"rate" is verdicts per second; p50 is the median verdict latency (from dispatch to
verdict, a panel's its slowest member's); CPU seconds per verdict are the pool's (this
process and every Ray process, the fake left out); the note gives the panel's ratios to
the single judge.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from bench.cluster import litellm_env
from bench.context import Context
from bench.report import Row, Target

LATENCY_S = 0.05
LIGHT = 32  # a load the pool serves without queueing: latency is then one call's
MEMBERS = ["@current", "litellm:openai/panel-b", "litellm:openai/panel-c"]


def run(ctx: Context) -> None:
    n = ctx.sizes.s10_requests
    fake = ctx.fake(LATENCY_S)
    judges = ctx.work / "panel_judges.toml"
    judges.write_text(f'[judges.trio]\npanel = {json.dumps(MEMBERS)}\naggregate = "median"\n')
    env = litellm_env(fake.url, ctx.work, "openai/panel-a",
                      LLM_JUDGE_NUM_WORKERS=str(ctx.workers), LLM_JUDGE_CACHE_SIZE="0",
                      LLM_JUDGE_JUDGES_FILE=str(judges),
                      LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=str(2 * n),
                      # calls per verdict are counted: a panel judge gets no canaries and
                      # the single judge none either (scenario 1 measures them)
                      LLM_JUDGE_CANARY_SHARE="0")
    judge = ctx.ray().start_judge(env, warm=_items(4, "warm", "trio"))
    try:
        for size in sorted({min(LIGHT, n), n}):
            single = ctx.report.add(_measure(ctx, fake, judge, size, None))
            panel = ctx.report.add(_measure(ctx, fake, judge, size, "trio"))
            _relate(ctx, single, panel)
    finally:
        ctx.ray().stop_judge()


def _relate(ctx: Context, single: Row, panel: Row) -> None:
    ctx.report.relate("10", single, [panel])
    latency = panel.p50_s / single.p50_s if panel.p50_s and single.p50_s else None
    cpu = (panel.cpu_s_per_req / single.cpu_s_per_req
           if panel.cpu_s_per_req and single.cpu_s_per_req else None)
    wall = panel.wall_s / single.wall_s if panel.wall_s and single.wall_s else None
    panel.note += (f"; vs the single judge: median latency x{latency:.2f}, CPU per "
                   f"verdict x{cpu:.2f}, batch wall time x{wall:.2f}"
                   if latency and cpu and wall else "")
    panel.extra.update(latency_ratio=latency, cpu_ratio=cpu, wall_ratio=wall)
    if cpu is not None:
        ctx.report.targets.append(Target(
            "10", f"panel of 3, {panel.n} in flight: CPU per verdict over the single "
            "judge's, per member call", "<= 1.25x", cpu / 3, cpu / 3 <= 1.25))


def _items(n: int, tag: str, judge: str | None) -> list[dict[str, Any]]:
    extra = {} if judge is None else {"judge": judge}
    return [{"prompt": f"Solve task {i}. [{tag}]", "response": f"Answer to task {i}.",
             **extra} for i in range(n)]


def _measure(ctx: Context, fake: Any, judge: Any, n: int, panel: str | None) -> Row:
    ray = ctx.ray().ray
    items = _items(n, f"{panel or 'single'}-{time.time_ns()}", panel)
    calls0 = fake.model_calls()
    cpu0, t0 = ctx.pool_cpu(), time.perf_counter()
    out = ray.get(judge.score_batch.remote(items), timeout=1800)
    wall, cpu = time.perf_counter() - t0, ctx.pool_cpu() - cpu0
    calls = fake.model_calls() - calls0
    ok = [v for v in out if v.ok]
    p50 = statistics.median(v.latency_s for v in ok) if ok else None
    what = "single judge" if panel is None else "panel of 3 (median)"
    return Row("10", f"{n} requests in flight, {what}", baseline=panel is None, n=len(out),
               ok=len(ok), wall_s=wall, rate=len(ok) / wall, unit="verdicts/s",
               cpu_s_per_req=cpu / len(out), p50_s=p50,
               p99_s=max(v.latency_s for v in ok) if ok else None,
               note=f"{calls / len(out):.2f} provider calls per verdict",
               extra={"provider_calls": calls})
