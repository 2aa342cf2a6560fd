"""Scenario 1: the LiteLLM path through the pool against one process calling litellm.

A fake OpenAI-compatible provider answers every call after 50 ms. For each in-flight
level C, all requests are submitted at once and at most C are in flight:

* baseline: one process, ``asyncio.gather`` of ``litellm.acompletion`` behind a
  semaphore of C (:mod:`bench.baseline_litellm`);
* (a) the pool, ``score_batch`` in batches of 256 (``LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=C``);
* (b) the pool, one ``score.remote`` call per request.

Latency is from submission to the caller seeing the verdict (queueing included), the
same clock for all three. CPU per request counts every process of the pool (driver,
judge, workers, Ray's daemons) or the baseline process, never the fake provider, whose
CPU is reported apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench import procs
from bench.cluster import API_KEY, RAY_ENV, REPO, items, litellm_env
from bench.context import Context
from bench.report import Row, Target

MODEL = "openai/bench-model"
LATENCY_S = 0.05


def run(ctx: Context) -> None:
    fake = ctx.fake(LATENCY_S)
    n, batch = ctx.sizes.s1_requests, ctx.sizes.s1_batch
    for level in ctx.sizes.s1_in_flight:
        base = _baseline(ctx, fake.url, n, level)
        ctx.report.add(base)
        cluster = ctx.ray()
        env = litellm_env(fake.url, ctx.work, MODEL,
                          LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=str(level),
                          LLM_JUDGE_NUM_WORKERS=str(ctx.workers),
                          LLM_JUDGE_BACKEND_TTL=str(ctx.sizes.s3_ttl_s))
        judge = cluster.start_judge(env, warm=items(max(64, 8 * ctx.workers), f"warm{level}"))
        pids = cluster.pids()
        batched = _pool(ctx, judge, pids, items(n, f"a{level}"), batch, level)
        single = _pool(ctx, judge, pids, items(n, f"b{level}"), None, level)
        ctx.report.add(batched)
        ctx.report.add(single)
        ctx.report.relate("1", base, [batched, single])
        for row, goal in ((batched, 1.3), (single, 1.0)):
            ctx.report.targets.append(Target(
                "1", f"{row.case} / baseline", f">= {goal}x", row.ratio,
                None if row.ratio is None else row.ratio >= goal))
    # The last judge stays up: scenario 3 switches it under load (workers already warm).


def _baseline(ctx: Context, url: str, n: int, level: int) -> Row:
    env = {**os.environ, **RAY_ENV, "OPENAI_API_BASE": f"{url}/v1", "OPENAI_API_KEY": API_KEY}
    fake0 = ctx.fake_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "bench.baseline_litellm", "--model", MODEL, "--n", str(n),
         "--concurrency", str(level)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    fake_cpu = ctx.fake_cpu() - fake0
    if done.returncode != 0:
        raise RuntimeError(f"baseline failed ({done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    lat = out["latencies"]
    return Row("1", f"asyncio.gather(litellm.acompletion), {level} in flight", baseline=True,
               n=n, ok=out["ok"], wall_s=out["wall_s"], rate=out["ok"] / out["wall_s"],
               cpu_s_per_req=out["cpu_s"] / n, p50_s=procs.percentile(lat, 0.5),
               p99_s=procs.percentile(lat, 0.99),
               extra={"in_flight": level, "fake_provider_cpu_s_per_req": fake_cpu / n,
                      "errors": out["errors"]})


def _pool(ctx: Context, judge: Any, pids: tuple[int, list[int]], its: list[dict[str, str]],
          batch: int | None, level: int) -> Row:
    judge_pid, worker_pids = pids
    case = (f"pool score_batch x{batch}, {level} in flight" if batch
            else f"pool score.remote each, {level} in flight")
    watched = [judge_pid, *worker_pids]
    cpu0 = {p: procs.tree_cpu([p]) for p in watched}
    fake0, pool0 = ctx.fake_cpu(), ctx.pool_cpu()
    name = f"s1-{'batch' if batch else 'single'}-{level}"
    with ctx.profile(name, watched):
        t0 = time.perf_counter()
        verdicts, latencies = asyncio.run(_drive(judge, its, batch))
        wall = time.perf_counter() - t0
    pool_cpu, fake_cpu = ctx.pool_cpu() - pool0, ctx.fake_cpu() - fake0
    cpu = {p: procs.tree_cpu([p]) - cpu0[p] for p in watched}
    ok = sum(1 for v in verdicts if v.ok)
    service = [v.latency_s for v in verdicts if v.ok]
    n = len(its)
    note = f"latency per call of {batch} items" if batch else ""
    return Row("1", case, n=n, ok=ok, wall_s=wall, rate=ok / wall, cpu_s_per_req=pool_cpu / n,
               note=note,
               p50_s=procs.percentile(latencies, 0.5), p99_s=procs.percentile(latencies, 0.99),
               extra={"in_flight": level, "latency_is": "per call" if batch is None else
                      f"per batch of {batch}",
                      "judge_cpu_s_per_req": cpu[judge_pid] / n,
                      "workers_cpu_s_per_req": sum(cpu[p] for p in worker_pids) / n,
                      "other_cpu_s_per_req": (pool_cpu - sum(cpu.values())) / n,
                      "fake_provider_cpu_s_per_req": fake_cpu / n,
                      "backend_p50_s": procs.percentile(service, 0.5),
                      "statuses": _statuses(verdicts)})


async def _drive(judge: Any, its: list[dict[str, str]], batch: int | None
                 ) -> tuple[list[Any], list[float]]:
    """Submit everything at once; each latency runs from its own submission."""
    latencies: list[float] = []

    async def call(ref: Any, submitted: float) -> Any:
        out = await ref
        latencies.append(time.perf_counter() - submitted)
        return out

    calls = []
    if batch:
        for i in range(0, len(its), batch):
            calls.append(call(judge.score_batch.remote(its[i:i + batch]), time.perf_counter()))
        results = await asyncio.gather(*calls)
        return [v for chunk in results for v in chunk], latencies
    for it in its:
        calls.append(call(judge.score.remote(it["prompt"], it["response"], it["reference"]),
                          time.perf_counter()))
    return list(await asyncio.gather(*calls)), latencies


def _statuses(verdicts: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v.status.value] = out.get(v.status.value, 0) + 1
    return out
