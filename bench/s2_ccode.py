"""Scenario 2: the Claude Code path, the real CLI against a fake Messages API answering at once.

N verdicts in flight (2 x CPUs, the pool's default), all submitted at once:

* baseline: one ``claude -p`` per verdict (:class:`ClaudeCodeBackend`, the seed's
  design), driven from this process;
* session mode, the same way (:class:`ClaudeCodeSessionBackend`, N sessions);
* the pool in one-shot mode and in session mode (``LLM_JUDGE_CCODE_MODE``), through the
  judge and its workers, one ``score.remote`` per verdict.

CPU per verdict counts this process and everything it started (the CLI processes, Ray
when the pool runs), never the fake provider. Peak memory is the largest sum of the
resident memory of the CLI processes alive at one moment (sampled every 0.1 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench import procs
from bench.cluster import API_KEY, ccode_env, items
from bench.context import Context, Skip
from bench.report import Row, Target


def _is_cli(comm: str) -> bool:
    return comm.startswith("claude")


def run(ctx: Context) -> None:
    if ctx.cli is None:
        raise Skip("no Claude Code CLI: pass --claude PATH or set CLAUDE_CLI_PATH")
    fake = ctx.fake(0.0)
    n_par = ctx.sizes.s2_parallel
    base = ctx.report.add(_direct(ctx, fake.url, "oneshot", ctx.sizes.s2_oneshot, n_par))
    direct = ctx.report.add(_direct(ctx, fake.url, "session", ctx.sizes.s2_session, n_par))
    pooled = [ctx.report.add(_pool(ctx, fake.url, mode, n, n_par))
              for mode, n in (("oneshot", ctx.sizes.s2_oneshot),
                              ("session", ctx.sizes.s2_session))]
    ctx.report.relate("2", base, [direct, *pooled])
    if ctx.cluster is not None:
        ctx.cluster.stop_judge()
    for row in (direct, pooled[1]):
        ctx.report.targets.append(Target(
            "2", f"{row.case} / baseline", ">= 5x", row.ratio,
            None if row.ratio is None else row.ratio >= 5.0))


def _direct(ctx: Context, url: str, mode: str, n: int, parallel: int) -> Row:
    from ray_judge.backends.ccode import ClaudeCodeBackend
    from ray_judge.backends.ccode_session import ClaudeCodeSessionBackend
    from ray_judge.config import JudgeConfig
    from ray_judge.judging.runner import JudgeRunner
    from ray_judge.spec import BackendSpec
    from ray_judge.verdict import JudgeRequest

    home = ctx.work / f"s2-home-{mode}"
    home.mkdir(exist_ok=True)
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(home),
               "ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": url}
    config = JudgeConfig(claude_cli_path=ctx.cli, timeout_s=120.0, deadline_s=600.0,
                         max_attempts=1, max_in_flight_ccode=parallel, num_workers=1,
                         ccode_mode=mode)
    cls = ClaudeCodeSessionBackend if mode == "session" else ClaudeCodeBackend
    requests = [JudgeRequest(**it) for it in items(n, f"s2-{mode}")]

    async def scenario() -> tuple[list[Any], list[float], float, float]:
        backend = cls(BackendSpec.ccode(), config, environ=environ)
        runner = JudgeRunner(backend)
        gate = asyncio.Semaphore(parallel)
        latencies: list[float] = []

        async def one(request: JudgeRequest) -> Any:
            submitted = time.perf_counter()
            async with gate:
                verdict = await runner.judge(request)
            latencies.append(time.perf_counter() - submitted)
            return verdict

        try:
            # As in the pool: processes start (sessions) and caches fill before the clock.
            warm = [JudgeRequest(**it) for it in items(parallel, f"warm-{mode}")]
            await asyncio.gather(*(one(r) for r in warm))
            latencies.clear()
            cpu0, t0 = ctx.pool_cpu(), time.perf_counter()
            verdicts = await asyncio.gather(*(one(r) for r in requests))
            wall = time.perf_counter() - t0
        finally:
            await backend.aclose()
        return verdicts, latencies, wall, ctx.pool_cpu() - cpu0

    with procs.PeakMemory(lambda: [os.getpid()], _is_cli) as peak, procs.Foreign() as foreign:
        verdicts, latencies, wall, cpu = asyncio.run(scenario())
    return _row(f"{'claude -p per verdict' if mode == 'oneshot' else 'session mode'}, "
                f"{parallel} in parallel, no pool", mode == "oneshot", verdicts, latencies,
                wall, cpu, peak, foreign)


def _pool(ctx: Context, url: str, mode: str, n: int, parallel: int) -> Row:
    cluster = ctx.ray()
    env = ccode_env(url, ctx.work, ctx.cli or "claude", LLM_JUDGE_CCODE_MODE=mode,
                    LLM_JUDGE_MAX_IN_FLIGHT_CCODE=str(parallel),
                    LLM_JUDGE_NUM_WORKERS=str(ctx.workers), LLM_JUDGE_MAX_ATTEMPTS="1",
                    LLM_JUDGE_TIMEOUT="120", LLM_JUDGE_DEADLINE="600")
    judge = cluster.start_judge(env, warm=items(parallel, f"warm-{mode}"))
    its = items(n, f"s2-pool-{mode}")
    judge_pid, worker_pids = cluster.pids()
    fakes = set(ctx.fake_pids)
    with procs.PeakMemory(lambda: [os.getpid()], _is_cli) as peak, \
            ctx.profile(f"s2-pool-{mode}", [judge_pid, *worker_pids]), \
            procs.Foreign() as foreign:
        cpu0, t0 = ctx.pool_cpu(), time.perf_counter()
        verdicts, latencies = asyncio.run(_drive(judge, its))
        wall, cpu = time.perf_counter() - t0, ctx.pool_cpu() - cpu0
    assert not fakes & {judge_pid, *worker_pids}
    return _row(f"pool, LLM_JUDGE_CCODE_MODE={mode}, {parallel} in flight", False, verdicts,
                latencies, wall, cpu, peak, foreign)


async def _drive(judge: Any, its: list[dict[str, str]]) -> tuple[list[Any], list[float]]:
    latencies: list[float] = []

    async def call(ref: Any, submitted: float) -> Any:
        out = await ref
        latencies.append(time.perf_counter() - submitted)
        return out

    calls = [call(judge.score.remote(it["prompt"], it["response"], it["reference"]),
                  time.perf_counter()) for it in its]
    return list(await asyncio.gather(*calls)), latencies


def _row(case: str, baseline: bool, verdicts: list[Any], latencies: list[float], wall: float,
         cpu: float, peak: procs.PeakMemory, foreign: procs.Foreign) -> Row:
    n = len(verdicts)
    ok = sum(1 for v in verdicts if v.ok)
    statuses: dict[str, int] = {}
    for v in verdicts:
        statuses[v.status.value] = statuses.get(v.status.value, 0) + 1
    errors = sorted({v.error for v in verdicts if not v.ok and v.error})[:3]
    return Row("2", case, baseline=baseline, n=n, ok=ok, wall_s=wall, rate=ok / wall,
               unit="verdicts/s", cpu_s_per_req=cpu / n, p50_s=procs.percentile(latencies, 0.5),
               p99_s=procs.percentile(latencies, 0.99), peak_mib=peak.peak_sum_mib,
               note=f"other processes: {foreign.cores:.2f} cores, steal "
                    f"{foreign.steal_cores:.2f}; {peak.peak_count} CLI processes at the peak, "
                    f"the largest {peak.peak_one_mib:.0f} MiB",
               extra={"foreign_cores": foreign.cores, "steal_cores": foreign.steal_cores,
                      "cli_processes_at_peak": peak.peak_count,
                      "largest_cli_process_mib": peak.peak_one_mib, "statuses": statuses,
                      "errors": errors})
