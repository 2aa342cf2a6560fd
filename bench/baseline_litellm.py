"""Scenario 1's baseline: one process doing ``asyncio.gather`` of ``litellm.acompletion``.

Run as ``python -m bench.baseline_litellm --n N --concurrency C`` with ``OPENAI_API_BASE``
pointing at the fake provider; prints one JSON line. Each call is the one the pool's
LiteLLM backend makes (same rendered prompt, same arguments), so the difference to the
pool is the pool itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time

from ray_judge.backends.litellm_backend import load_litellm
from ray_judge.judging.parsing import parse_score
from ray_judge.judging.rubric import Rubric
from ray_judge.verdict import JudgeRequest


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(litellm, model: str, n: int, concurrency: int) -> dict:
    rubric = Rubric.default()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    service: list[float] = []  # inside the semaphore: the pool's Verdict.latency_s
    ok = 0

    async def one(i: int) -> None:
        nonlocal ok
        start = time.perf_counter()
        async with gate:
            began = time.perf_counter()
            request = JudgeRequest(prompt=f"What is {i} + {i}? [baseline]",
                                   response=f"It is {2 * i}.", reference=str(2 * i))
            prompt = rubric.render(request, 20_000)
            response = await litellm.acompletion(
                model=model, messages=prompt.as_messages(), timeout=120.0, max_retries=0,
                num_retries=0, max_tokens=1024, temperature=0.0, drop_params=True)
            parse_score(response.choices[0].message.content, 10.0)
            ok += 1
            service.append(time.perf_counter() - began)
        latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i) for i in range(min(16, n))))  # connections, first calls
    latencies.clear()
    service.clear()
    ok = 0
    cpu0, t0 = _cpu(), time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"n": n, "ok": ok, "wall_s": wall, "cpu_s": cpu, "latencies": latencies,
            "service": service, "errors": errors[:3], "pid": os.getpid()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="openai/gpt-4o-mini")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    litellm = load_litellm()
    out = asyncio.run(_run(litellm, args.model, args.n, args.concurrency))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
