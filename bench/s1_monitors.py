"""Scenario 1, the quality monitors on vs all off: what canaries (at the default share),
length bias and the shift reservoir cost the pool per verdict.

Two judges on the lean transport, started in turn for each of at least three
repetitions (the order alternates, so drift in other people's load falls on both): one
with every monitor off (``LLM_JUDGE_CANARY_SHARE=0``, ``LLM_JUDGE_LENGTH_BIAS_WINDOW=0``,
``LLM_JUDGE_RESERVOIR_SIZE=0``), one with the defaults (canaries at 0.01, a length window
of 1,000, a reservoir of 300). Each serves the same number of distinct requests with
``score_batch``, all submitted at once, and the CPU window closes only when its canaries
(judged in the background after the queue empties) are done, so their cost is inside it.

Canary calls are judge calls the caller did not ask for: they are reported apart (how
many, and their estimated CPU, that many times the off judge's CPU per verdict) and taken
out of the on judge's figure before it is compared with the off judge's. The target: the
monitors add at most 10% CPU per verdict.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench import procs
from bench.cluster import items, litellm_env
from bench.context import Context
from bench.report import Row, Target

OFF = {"LLM_JUDGE_CANARY_SHARE": "0", "LLM_JUDGE_LENGTH_BIAS_WINDOW": "0",
       "LLM_JUDGE_RESERVOIR_SIZE": "0"}
#: The target: CPU per verdict with the monitors on (canary calls excluded) / all off.
GOAL = 1.10


def run(ctx: Context, url: str, model: str, level: int) -> None:
    """Measure both judges ``ctx.sizes.s1_reps`` times; add their rows and the target."""
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for rep in range(max(3, ctx.sizes.s1_reps + 1)):
        for case in ("off", "on") if rep % 2 == 0 else ("on", "off"):
            runs[case].append(_measure(ctx, url, model, level, case, f"m{rep}{case}"))
    n = _requests(ctx)
    med = statistics.median
    off_cpu = [r["cpu"] / n for r in runs["off"]]
    rows = {}
    for case, label in (("off", "all off"), ("on", "canaries 0.01, length bias, reservoir")):
        measured = runs[case]
        # x baseline here: throughput against the monitors-off judge of the same repetition
        speed = [r["ok"] / r["wall"] / (off["ok"] / off["wall"])
                 for r, off in zip(measured, runs["off"], strict=True)]
        canaries = [r["canaries"] for r in measured]
        # Canary calls cost what a verdict costs: take them out at the off judge's rate.
        cpu = [(r["cpu"] - r["canaries"] * off) / n for r, off in
               zip(measured, off_cpu, strict=True)]
        rows[case] = ctx.report.add(Row(
            "1", f"pool (lean transport) score_batch x{ctx.sizes.s1_batch}, {level} in "
                 f"flight, monitors {label}", n=n * len(measured),
            ok=sum(int(r["ok"]) for r in measured), wall_s=sum(r["wall"] for r in measured),
            rate=med(r["ok"] / r["wall"] for r in measured), ratio=med(speed),
            cpu_s_per_req=med(cpu), p50_s=med(r["p50"] for r in measured),
            p99_s=med(r["p99"] for r in measured),
            note=f"{len(measured)} runs, x baseline against the monitors-off judge; latency "
                 f"per call of a batch; judge {med(r['judge'] / n for r in measured) * 1e3:.3f}"
                 f" ms/verdict; canary calls {', '.join(f'{c:.0f}' for c in canaries)} "
                 f"(excluded, est. {med(canaries) * med(off_cpu) / n * 1e3:.4f} ms/verdict)",
            extra={"in_flight": level, "runs": measured, "canary_calls": canaries,
                   "cpu_s_per_req_with_canaries": med(r["cpu"] / n for r in measured)}))
    ratios = [(on["cpu"] - on["canaries"] * off["cpu"] / n) / off["cpu"]
              for on, off in zip(runs["on"], runs["off"], strict=True)]
    ratio = med(ratios)
    ctx.report.targets.append(Target(
        "1", f"pool CPU per verdict, monitors on (canary calls excluded) / all off, {level} "
             "in flight", f"<= {GOAL:.2f}", ratio, ratio <= GOAL,
        f"{rows['on'].cpu_s_per_req * 1e3:.3f} vs {rows['off'].cpu_s_per_req * 1e3:.3f} ms; "
        f"ratios {', '.join(f'{r:.3f}' for r in ratios)}"))


def _measure(ctx: Context, url: str, model: str, level: int, case: str,
             tag: str) -> dict[str, float]:
    cluster = ctx.ray()
    env = litellm_env(url, ctx.work, model, LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=str(level),
                      LLM_JUDGE_NUM_WORKERS=str(ctx.workers), **(OFF if case == "off" else {}))
    judge = cluster.start_judge(env, warm=items(max(level, 64), f"warm-{tag}"))
    _drain(cluster, judge)  # the warm-up's canaries are not this measurement's
    before = _canaries(cluster, judge)
    judge_pid, _ = cluster.pids()
    its = items(_requests(ctx), tag)
    cpu0, judge0 = ctx.pool_cpu(), procs.tree_cpu([judge_pid])
    t0 = time.perf_counter()
    verdicts, latencies = asyncio.run(_drive(judge, its, ctx.sizes.s1_batch))
    wall = time.perf_counter() - t0
    _drain(cluster, judge)
    cpu, judge_cpu = ctx.pool_cpu() - cpu0, procs.tree_cpu([judge_pid]) - judge0
    return {"cpu": cpu, "judge": judge_cpu, "wall": wall,
            "p50": procs.percentile(latencies, 0.5), "p99": procs.percentile(latencies, 0.99),
            "ok": sum(1 for v in verdicts if v.ok),
            "canaries": _canaries(cluster, judge) - before}


def _requests(ctx: Context) -> int:
    # Twice a case's usual size: the difference measured is a few percent, so the fixed
    # costs of a measurement (status calls, the last batch's tail) should weigh little.
    return 2 * ctx.sizes.s1_requests


def _canaries(cluster: Any, judge: Any) -> int:
    return cluster.ray.get(judge.status.remote(), timeout=60)["canaries"]["sent"]


def _drain(cluster: Any, judge: Any, timeout_s: float = 60.0) -> None:
    """Wait until no canary is waiting to be judged."""
    deadline = time.monotonic() + timeout_s
    while cluster.ray.get(judge.status.remote(), timeout=60)["canaries"]["pending"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"canaries still pending after {timeout_s:g}s")
        time.sleep(0.05)


async def _drive(judge: Any, its: list[dict[str, str]], batch: int
                 ) -> tuple[list[Any], list[float]]:
    """Every batch submitted at once; each latency from submission to its answer."""
    latencies: list[float] = []

    async def call(chunk: list[dict[str, str]]) -> list[Any]:
        submitted = time.perf_counter()
        out = await judge.score_batch.remote(chunk)
        latencies.append(time.perf_counter() - submitted)
        return out

    chunks = await asyncio.gather(*(call(its[i:i + batch]) for i in range(0, len(its), batch)))
    return [v for chunk in chunks for v in chunk], latencies
