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
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import procs
from bench.cluster import API_KEY, RAY_ENV, REPO, items, litellm_env
from bench.context import Context
from bench.report import Row, Target

MODEL = "openai/gpt-4o-mini"  # a model litellm knows, as in real use (price lookups)
LATENCY_S = 0.05


def run(ctx: Context) -> None:
    fake = ctx.fake(LATENCY_S)
    n, batch, reps = ctx.sizes.s1_requests, ctx.sizes.s1_batch, ctx.sizes.s1_reps
    for level in ctx.sizes.s1_in_flight:
        cluster = ctx.ray()
        env = litellm_env(fake.url, ctx.work, MODEL,
                          LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=str(level),
                          LLM_JUDGE_NUM_WORKERS=str(ctx.workers),
                          LLM_JUDGE_BACKEND_TTL=str(ctx.sizes.s3_ttl_s))
        judge = cluster.start_judge(env, warm=items(max(64, 8 * ctx.workers), f"warm{level}"))
        pids = cluster.pids()
        runs: dict[str, list[Row]] = {"base": [], "batch": [], "single": []}
        # Interleaved repetitions: other people's load drifts, a baseline measured right
        # before each pool run shares its conditions; each ratio is to that baseline.
        for rep in range(reps):
            runs["base"].append(_baseline(ctx, fake.url, n, level))
            runs["batch"].append(_pool(ctx, judge, pids, items(n, f"a{level}-{rep}"), batch,
                                       level))
            runs["single"].append(_pool(ctx, judge, pids, items(n, f"b{level}-{rep}"), None,
                                        level))
        base = ctx.report.add(_merge(runs["base"], runs["base"]))
        for key, goal in (("batch", 1.3), ("single", 1.0)):
            row = ctx.report.add(_merge(runs[key], runs["base"]))
            ctx.report.targets.append(Target(
                "1", f"{row.case} / baseline", f">= {goal}x", row.ratio,
                None if row.ratio is None else row.ratio >= goal,
                _why(row, base)))
    # The last judge stays up: scenario 3 switches it under load (workers already warm).


_PER_REQUEST = ("judge_cpu_s_per_req", "workers_cpu_s_per_req", "other_cpu_s_per_req",
                "fake_provider_cpu_s_per_req", "service_p50_s", "service_p99_s")


def _merge(rows: list[Row], bases: list[Row]) -> Row:
    """One row for the repetitions of a case: medians, and the median of the ratios of
    each repetition to the baseline measured just before it."""
    med = statistics.median
    first = rows[0]
    ratios = [r.rate / b.rate for r, b in zip(rows, bases, strict=True) if r.rate and b.rate]
    foreign = [r.extra["foreign_cores"] for r in rows]
    steal = [r.extra["steal_cores"] for r in rows]
    medians = {key: med(r.extra[key] for r in rows) for key in _PER_REQUEST
               if all(r.extra.get(key) is not None for r in rows)}
    merged = Row(
        "1", first.case, baseline=first.baseline, n=sum(r.n for r in rows),
        ok=sum(r.ok for r in rows), wall_s=sum(r.wall_s or 0 for r in rows),
        rate=med(r.rate or 0 for r in rows), ratio=med(ratios) if ratios else None,
        cpu_s_per_req=med(r.cpu_s_per_req or 0 for r in rows),
        p50_s=med(r.p50_s or 0 for r in rows), p99_s=med(r.p99_s or 0 for r in rows),
        note=f"{len(rows)} runs; other processes: {', '.join(f'{c:.2f}' for c in foreign)} "
             f"cores, steal {', '.join(f'{c:.2f}' for c in steal)}"
             + ("; latency per call of a batch" if "batch" in first.case else ""),
        extra={**first.extra, **medians, "runs": [
            {"rate": r.rate, "cpu_s_per_req": r.cpu_s_per_req, "p50_s": r.p50_s,
             "p99_s": r.p99_s, "extra": r.extra} for r in rows],
            "ratios": ratios, "foreign_cores": foreign, "steal_cores": steal})
    return merged


def _why(row: Row, base: Row) -> str:
    """The CPU arithmetic behind a ratio: on 2 cores, CPU per request bounds throughput."""
    if not (row.cpu_s_per_req and base.cpu_s_per_req):
        return ""
    fake = row.extra.get("fake_provider_cpu_s_per_req") or 0.0
    return (f"CPU/request {row.cpu_s_per_req * 1000:.1f} ms (pool) vs "
            f"{base.cpu_s_per_req * 1000:.1f} ms (baseline), fake provider "
            f"{fake * 1000:.1f} ms; judge {row.extra.get('judge_cpu_s_per_req', 0) * 1000:.2f}"
            f" ms, workers {row.extra.get('workers_cpu_s_per_req', 0) * 1000:.1f} ms")


def _baseline(ctx: Context, url: str, n: int, level: int) -> Row:
    env = {**os.environ, **RAY_ENV, "OPENAI_API_BASE": f"{url}/v1", "OPENAI_API_KEY": API_KEY}
    fake0 = ctx.fake_cpu()
    with procs.Foreign() as foreign:
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
                      "foreign_cores": foreign.cores, "steal_cores": foreign.steal_cores,
                      "errors": out["errors"],
                      "service_p50_s": procs.percentile(out["service"], 0.5),
                      "service_p99_s": procs.percentile(out["service"], 0.99)})


def _pool(ctx: Context, judge: Any, pids: tuple[int, list[int]], its: list[dict[str, str]],
          batch: int | None, level: int) -> Row:
    judge_pid, worker_pids = pids
    case = (f"pool score_batch x{batch}, {level} in flight" if batch
            else f"pool score.remote each, {level} in flight")
    watched = [judge_pid, *worker_pids]
    cpu0 = {p: procs.tree_cpu([p]) for p in watched}
    fake0, pool0 = ctx.fake_cpu(), ctx.pool_cpu()
    name = f"s1-{'batch' if batch else 'single'}-{level}"
    with ctx.profile(name, watched), procs.Foreign() as foreign:
        t0 = time.perf_counter()
        verdicts, latencies = asyncio.run(_drive(judge, its, batch))
        wall = time.perf_counter() - t0
    pool_cpu, fake_cpu = ctx.pool_cpu() - pool0, ctx.fake_cpu() - fake0
    cpu = {p: procs.tree_cpu([p]) - cpu0[p] for p in watched}
    ok = sum(1 for v in verdicts if v.ok)
    service = [v.latency_s for v in verdicts if v.ok]
    n = len(its)
    return Row("1", case, n=n, ok=ok, wall_s=wall, rate=ok / wall, cpu_s_per_req=pool_cpu / n,
               p50_s=procs.percentile(latencies, 0.5), p99_s=procs.percentile(latencies, 0.99),
               extra={"in_flight": level, "latency_is": "per call" if batch is None else
                      f"per batch of {batch}",
                      "judge_cpu_s_per_req": cpu[judge_pid] / n,
                      "workers_cpu_s_per_req": sum(cpu[p] for p in worker_pids) / n,
                      "other_cpu_s_per_req": (pool_cpu - sum(cpu.values())) / n,
                      "fake_provider_cpu_s_per_req": fake_cpu / n,
                      "foreign_cores": foreign.cores, "steal_cores": foreign.steal_cores,
                      "service_p50_s": procs.percentile(service, 0.5),
                      "service_p99_s": procs.percentile(service, 0.99),
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
