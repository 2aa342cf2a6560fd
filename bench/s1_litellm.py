"""Scenario 1: the LiteLLM path through the pool against one process calling litellm.

A fake OpenAI-compatible provider answers every call after 50 ms. For each in-flight
level C, all requests are submitted at once and at most C are in flight:

* baseline: one process, ``asyncio.gather`` of ``litellm.acompletion`` behind a
  semaphore of C (:mod:`bench.baseline_litellm`);
* ceiling: the same process shape with a bare aiohttp POST per call, nothing else;
* the pool on LiteLLM's transport (``LLM_JUDGE_LITELLM_TRANSPORT=litellm``),
  ``score_batch`` in batches of 256;
* the pool on the lean transport (the default): ``score_batch``; one ``score.remote``
  per request on the raw handle; one call per request through ``ray_judge.JudgeClient``
  (when the package has it).

Latency is from submission to the caller seeing the verdict (queueing included), the
same clock for all. CPU per verdict counts every process of the pool (driver, judge,
workers, Ray's daemons) or the baseline process, never the fake provider, whose CPU is
reported apart. Then the lean pool with the quality monitors on and all off
(:mod:`bench.s1_monitors`). Finally the baseline, the ceiling and the lean pool run once
more at the highest level while a busy loop (another process) keeps one core busy.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from bench import procs, s1_monitors
from bench.cluster import API_KEY, RAY_ENV, REPO, items, litellm_env
from bench.context import Context
from bench.report import Row, Target

MODEL = "openai/gpt-4o-mini"  # a model litellm knows, as in real use (price lookups)
LATENCY_S = 0.05
#: (key, label): the cases on the lean transport's judge, in the order each rep runs them
LEAN_CASES = (("batch", "score_batch x{batch}"), ("single", "score.remote each"),
              ("client", "JudgeClient single calls"))


def run(ctx: Context) -> None:
    fake = ctx.fake(LATENCY_S)
    n, reps = ctx.sizes.s1_requests, ctx.sizes.s1_reps
    top = max(ctx.sizes.s1_in_flight)
    for level in ctx.sizes.s1_in_flight:
        runs: dict[str, list[Row]] = {}
        # Interleaved repetitions: other people's load drifts, a baseline measured right
        # before each pool run shares its conditions; each ratio is to that baseline.
        judge, pids = _judge(ctx, fake.url, level, "litellm")
        for rep in range(reps):
            runs.setdefault("base-l", []).append(_baseline(ctx, fake.url, n, level))
            runs.setdefault("lbatch", []).append(_pool(
                ctx, judge, pids, items(n, f"l{level}-{rep}"), "batch", level, "litellm"))
        judge, pids = _judge(ctx, fake.url, level, "lean")
        for rep in range(reps):
            runs.setdefault("base", []).append(_baseline(ctx, fake.url, n, level))
            runs.setdefault("raw", []).append(_baseline(ctx, fake.url, n, level, "aiohttp"))
            for key, _ in LEAN_CASES:
                if key == "client" and _client_class() is None:
                    continue
                runs.setdefault(key, []).append(_pool(
                    ctx, judge, pids, items(n, f"{key}{level}-{rep}"), key, level, "lean"))
        base = ctx.report.add(_merge(runs["base"] + runs["base-l"],
                                     runs["base"] + runs["base-l"]))
        raw = ctx.report.add(_merge(runs["raw"], runs["base"]))
        ctx.report.add(_merge(runs["lbatch"], runs["base-l"]))
        rows = {key: ctx.report.add(_merge(runs[key], runs["base"]))
                for key, _ in LEAN_CASES if key in runs}
        if level == top:
            _targets(ctx, level, base, raw, rows, runs)
    # What the quality monitors (canaries, length bias, the shift reservoir) cost.
    s1_monitors.run(ctx, fake.url, MODEL, top)
    if ctx.sizes.s1_busy:
        _busy_run(ctx, fake.url, n, top)
    # The last judge stays up: scenario 3 switches it under load (workers already warm).


def _judge(ctx: Context, url: str, level: int, transport: str) -> tuple[Any, Any]:
    cluster = ctx.ray()
    env = litellm_env(url, ctx.work, MODEL,
                      LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=str(level),
                      LLM_JUDGE_NUM_WORKERS=str(ctx.workers),
                      LLM_JUDGE_LITELLM_TRANSPORT=transport,
                      LLM_JUDGE_BACKEND_TTL=str(ctx.sizes.s3_ttl_s))
    # Warmed with as many requests as may be in flight: every case then measures the
    # steady state of a run that has been going for a while (workers' backends imported,
    # the keep-alive connections open), not the one-off cost of opening them, which
    # otherwise falls on whichever case runs first.
    judge = cluster.start_judge(env, warm=items(max(level, 64, 8 * ctx.workers),
                                                f"warm{level}{transport}"))
    return judge, cluster.pids()


def _targets(ctx: Context, level: int, base: Row, raw: Row, rows: dict[str, Row],
             runs: dict[str, list[Row]]) -> None:
    batch = rows["batch"]
    cpu_ms = None if batch.cpu_s_per_req is None else batch.cpu_s_per_req * 1000
    ctx.report.targets.append(Target(
        "1", f"pool CPU per verdict, lean transport, score_batch, {level} in flight (ms)",
        "<= 1.0", cpu_ms, None if cpu_ms is None else cpu_ms <= 1.0, _why(batch, base)))
    for key, goal in (("batch", 4.0), ("client", 3.0)):
        row = rows.get(key)
        if row is None:
            ctx.report.targets.append(Target("1", f"{key} / baseline", f">= {goal}x", None,
                                             None, "ray_judge.JudgeClient not in this build"))
            continue
        ctx.report.targets.append(Target(
            "1", f"{row.case} / baseline", f">= {goal}x", row.ratio,
            None if row.ratio is None else row.ratio >= goal, _why(row, base)))
    ceiling = [b.rate / r.rate for b, r in zip(runs["batch"], runs["raw"], strict=True)
               if b.rate and r.rate]
    share = statistics.median(ceiling) if ceiling else None
    ctx.report.targets.append(Target(
        "1", f"score_batch / raw aiohttp ceiling, {level} in flight", ">= 0.4", share,
        None if share is None else share >= 0.4,
        f"ceiling {raw.rate or 0:.0f}/s at {(raw.cpu_s_per_req or 0) * 1000:.2f} ms CPU"))


def _busy_run(ctx: Context, url: str, n: int, level: int) -> None:
    """The baseline, the ceiling and the lean pool again, with one core kept busy."""
    judge, pids = _judge(ctx, url, level, "lean")
    with _busy_loop():
        base = _baseline(ctx, url, n, level)
        raw = _baseline(ctx, url, n, level, "aiohttp")
        cases = [_pool(ctx, judge, pids, items(n, f"busy-{key}"), key, level, "lean")
                 for key, _ in LEAN_CASES if key != "client" or _client_class() is not None]
    tag = " [one core busy]"
    base_row = ctx.report.add(_merge([base], [base]))
    base_row.case += tag
    for row in (raw, *cases):
        merged = ctx.report.add(_merge([row], [base]))
        merged.case += tag
        if "score_batch" in merged.case or "JudgeClient" in merged.case:
            goal = 4.0 if "score_batch" in merged.case else 3.0
            ctx.report.targets.append(Target(
                "1", f"{merged.case} / baseline", f">= {goal}x", merged.ratio,
                None if merged.ratio is None else merged.ratio >= goal,
                _why(merged, base_row)))


@contextmanager
def _busy_loop() -> Iterator[int]:
    """Another process spinning on one core: started detached (so the bench does not
    count it as its own CPU, and the 'other processes' figure shows it), killed by pid."""
    spawn = subprocess.run(
        ["/bin/sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & "
                          "echo $!"], capture_output=True, text=True, check=True, timeout=30)
    pid = int(spawn.stdout.strip())
    try:
        time.sleep(0.5)
        yield pid
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _client_class() -> Any:
    import ray_judge

    return getattr(ray_judge, "JudgeClient", None)


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


def _baseline(ctx: Context, url: str, n: int, level: int, client: str = "litellm") -> Row:
    env = {**os.environ, **RAY_ENV, "OPENAI_API_BASE": f"{url}/v1", "OPENAI_API_KEY": API_KEY}
    fake0 = ctx.fake_cpu()
    with procs.Foreign() as foreign:
        done = subprocess.run(
            [sys.executable, "-m", "bench.baseline_litellm", "--model", MODEL, "--n", str(n),
             "--concurrency", str(level), "--client", client],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    fake_cpu = ctx.fake_cpu() - fake0
    if done.returncode != 0:
        raise RuntimeError(f"baseline failed ({done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    lat = out["latencies"]
    what = ("asyncio.gather(litellm.acompletion)" if client == "litellm"
            else "ceiling: asyncio.gather(aiohttp POST)")
    return Row("1", f"{what}, {level} in flight", baseline=client == "litellm",
               n=n, ok=out["ok"], wall_s=out["wall_s"], rate=out["ok"] / out["wall_s"],
               cpu_s_per_req=out["cpu_s"] / n, p50_s=procs.percentile(lat, 0.5),
               p99_s=procs.percentile(lat, 0.99),
               extra={"in_flight": level, "fake_provider_cpu_s_per_req": fake_cpu / n,
                      "foreign_cores": foreign.cores, "steal_cores": foreign.steal_cores,
                      "errors": out["errors"],
                      "service_p50_s": procs.percentile(out["service"], 0.5),
                      "service_p99_s": procs.percentile(out["service"], 0.99)})


def _pool(ctx: Context, judge: Any, pids: tuple[int, list[int]], its: list[dict[str, str]],
          key: str, level: int, transport: str) -> Row:
    judge_pid, worker_pids = pids
    batch = ctx.sizes.s1_batch if key == "batch" else None
    label = dict(LEAN_CASES)[key].format(batch=batch)
    case = f"pool ({transport} transport) {label}, {level} in flight"
    watched = [judge_pid, *worker_pids]
    cpu0 = {p: procs.tree_cpu([p]) for p in watched}
    fake0, pool0 = ctx.fake_cpu(), ctx.pool_cpu()
    name = f"s1-{transport}-{key}-{level}"
    with ctx.profile(name, watched), procs.Foreign() as foreign:
        t0 = time.perf_counter()
        if key == "client":
            verdicts, latencies = asyncio.run(_drive_client(its))
        else:
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


async def _drive_client(its: list[dict[str, str]]) -> tuple[list[Any], list[float]]:
    """One call per request through the batching client, as a rollout worker makes them."""
    client = _client_class()()
    latencies: list[float] = []

    async def call(it: dict[str, str]) -> Any:
        submitted = time.perf_counter()
        out = await client.score_async(it["prompt"], it["response"], it["reference"])
        latencies.append(time.perf_counter() - submitted)
        return out

    try:
        return list(await asyncio.gather(*(call(it) for it in its))), latencies
    finally:
        client.close()


def _statuses(verdicts: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v.status.value] = out.get(v.status.value, 0) + 1
    return out
