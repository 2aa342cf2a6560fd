"""Scenario 1's baselines: one process doing ``asyncio.gather`` of single calls.

Run as ``python -m bench.baseline_litellm --n N --concurrency C [--client aiohttp]`` with
``OPENAI_API_BASE`` pointing at the fake provider; prints one JSON line. Each call is the
one the pool's LiteLLM backend makes (same rendered prompt, same arguments), so the
difference to the pool is the pool itself:

* ``--client litellm`` (the baseline): ``litellm.acompletion``;
* ``--client aiohttp`` (the ceiling): a bare POST of the same JSON body over one
  ``aiohttp.ClientSession``, the answer's JSON read and its score parsed, nothing else.
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


def _raw_client(model: str, concurrency: int):
    """A call like litellm.acompletion's, by hand: the floor of what a call can cost."""
    import aiohttp

    url = os.environ["OPENAI_API_BASE"].rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
               "Content-Type": "application/json"}
    name = model.split("/", 1)[1]
    session: list[aiohttp.ClientSession] = []

    async def call(messages: list[dict[str, str]]) -> str:
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                limit=concurrency, limit_per_host=concurrency)))
        body = json.dumps({"model": name, "messages": messages, "temperature": 0.0,
                           "max_tokens": 1024}).encode()
        async with session[0].post(url, data=body, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=120.0)) as response:
            data = json.loads(await response.read())
        return data["choices"][0]["message"]["content"]

    return call


async def _run(litellm, model: str, n: int, concurrency: int, client: str = "litellm") -> dict:
    rubric = Rubric.default()
    raw = _raw_client(model, concurrency) if client == "aiohttp" else None
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
            if raw is not None:
                text = await raw(prompt.as_messages())
            else:
                response = await litellm.acompletion(
                    model=model, messages=prompt.as_messages(), timeout=120.0, max_retries=0,
                    num_retries=0, max_tokens=1024, temperature=0.0, drop_params=True)
                text = response.choices[0].message.content
            parse_score(text, 10.0)
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
    parser.add_argument("--client", choices=("litellm", "aiohttp"), default="litellm")
    args = parser.parse_args()
    litellm = load_litellm() if args.client == "litellm" else None
    out = asyncio.run(_run(litellm, args.model, args.n, args.concurrency, args.client))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
