"""Scenario 3: switch latency, from ``switch_judge_backend.py litellm MODEL`` returning to
the first Verdict served by the new backend, while the pool is under load.

The judge serves ``litellm:openai/bench-a`` or ``-b`` (the same fake provider, 50 ms);
a load loop keeps a few ``score`` calls in flight and notes when each verdict arrived
and which backend served it. The switch command runs as a person runs it, in a
subprocess, twice per repetition:

* notify: a Ray cluster is reachable (``RAY_ADDRESS``), so the command tells the judge
  to re-read the file; target <= 1 s;
* file only: no cluster is reachable from the command, the judge finds the new file by
  its TTL (``LLM_JUDGE_BACKEND_TTL``); target <= TTL + 1 s.

A negative latency means the judge served the new backend before the command returned
(the notify happens before the command's own exit, which shuts its Ray client down).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from bench import procs
from bench.cluster import RAY_ENV, REPO, items, litellm_env
from bench.context import Context
from bench.report import Row, Target

MODELS = ("openai/bench-a", "openai/bench-b")
LATENCY_S = 0.05


def run(ctx: Context) -> None:
    fake = ctx.fake(LATENCY_S)
    ttl = ctx.sizes.s3_ttl_s
    cluster = ctx.ray()
    env = cluster.judge_env
    if not (cluster.judge is not None and env.get("LLM_JUDGE_NAME", "").startswith("litellm:")
            and env.get("LLM_JUDGE_BACKEND_TTL") == str(ttl)):  # else scenario 1's judge
        env = litellm_env(fake.url, ctx.work, MODELS[0], LLM_JUDGE_BACKEND_TTL=str(ttl),
                          LLM_JUDGE_NUM_WORKERS=str(ctx.workers))
        cluster.start_judge(env, warm=items(16, "s3-warm"))
    judge = cluster.judge
    backend_file = env["LLM_JUDGE_BACKEND_FILE"]
    no_cluster = ctx.work / "no-cluster"  # a RAY_TMPDIR holding no cluster to notify
    no_cluster.mkdir(exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {"notify": [], "file": []}
    plan = [mode for _ in range(ctx.sizes.s3_reps) for mode in ("notify", "file")]
    current = 0

    async def scenario() -> None:
        nonlocal current
        loop = _Load(judge, ctx.sizes.s3_in_flight)
        task = asyncio.ensure_future(loop.run())
        try:
            await loop.wait_for(lambda: loop.served > 20, 60)
            for mode in plan:
                current = 1 - current
                spec = f"litellm:{MODELS[current]}"
                cli_env = {**os.environ, **RAY_ENV, "LLM_JUDGE_BACKEND_FILE": backend_file}
                if mode == "notify":
                    cli_env["RAY_ADDRESS"] = cluster.address
                else:  # nothing for the command to find: RAY_ADDRESS unset, no local cluster
                    cli_env.pop("RAY_ADDRESS", None)
                    cli_env["RAY_TMPDIR"] = str(no_cluster)
                started = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, str(REPO / "switch_judge_backend.py"), "litellm",
                    MODELS[current], cwd=str(ctx.work), env=cli_env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = await proc.communicate()
                returned = time.perf_counter()
                if proc.returncode != 0:
                    raise RuntimeError(f"switch failed: {out.decode()} {err.decode()}")
                first = await loop.wait_for(lambda s=spec, t=started: loop.first(s, t),
                                            ttl + 30)
                results[mode].append((first - returned, first - started))
                await asyncio.sleep(0.5)
        finally:
            loop.stop = True
            await task

    asyncio.run(scenario())
    cluster.stop_judge()
    for mode, goal, label in (("notify", 1.0, "with the notify"),
                              ("file", ttl + 1.0, f"file only (TTL {ttl:g} s)")):
        latencies = [r for r, _ in results[mode]]
        worst = max(latencies) if latencies else None
        ctx.report.add(Row(
            "3", f"switch {label}", n=len(latencies), ok=len(latencies),
            unit="s", p50_s=procs.percentile(latencies, 0.5), p99_s=worst,
            note="seconds from the command's return to the first new verdict (p99: the "
                 "worst); from its start: " + ", ".join(f"{s:.2f}" for _, s in results[mode]),
            extra={"from_return_s": latencies,
                   "from_command_start_s": [s for _, s in results[mode]],
                   "note": "p99 column is the worst of the repetitions"}))
        ctx.report.targets.append(Target(
            "3", f"switch {label}: worst seconds from the command's return", f"<= {goal:g} s",
            worst, None if worst is None else worst <= goal))


class _Load:
    """Keeps ``in_flight`` score calls going; remembers when each backend first answered."""

    def __init__(self, judge: Any, in_flight: int) -> None:
        self.judge, self.in_flight = judge, in_flight
        self.stop = False
        self.served = 0
        self.seen: list[tuple[float, str]] = []  # (arrival, backend)
        self._seq = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.in_flight)))

    async def _worker(self) -> None:
        while not self.stop:
            self._seq += 1
            verdict = await self.judge.score.remote(f"Switch load {self._seq}?", "yes")
            self.served += 1
            self.seen.append((time.perf_counter(), verdict.backend))

    def first(self, spec: str, after: float) -> float | None:
        for at, backend in self.seen:
            if backend == spec and at > after:
                return at
        return None

    async def wait_for(self, predicate: Any, timeout: float) -> Any:
        deadline = time.perf_counter() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no result within {timeout:g}s")
            await asyncio.sleep(0.01)
