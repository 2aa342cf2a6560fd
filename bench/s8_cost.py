"""Scenario 8: what a GRPO step costs through an Anthropic model, prompt caching off and
on, pointwise and grouped.

An origin-shaped workload: a 7 KB rubric as the system prompt, P task prompts of about
2 KB, K responses of about 1 KB each. Judged by the real LiteLLM backend (lean transport)
against the fake Anthropic API in this process, which implements Anthropic's caching
rules and usage fields (a marked prefix written on first use, read while warm), priced
by LiteLLM for ``anthropic/claude-sonnet-4-5``. No Ray: the cost of a verdict does not
depend on the pool. Calls go one at a time, in the order a GRPO step submits them (a
task's K responses together): with many in flight at once, a few more responses of a
task could miss a prefix its first call is still writing.

"rate" is US dollars per 1,000 verdicts (lower is better; "x baseline" is the share of
caching off's cost); the note splits out the input cost.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.context import Context
from bench.report import Row, Target

MODEL = "anthropic/claude-sonnet-4-5"


def _answer(k: int) -> str:
    # Reads both ways: a SCORE line for a pointwise judge, {"scores"} for a group judge.
    scores = ", ".join(str(5 + i % 5) for i in range(k))
    return f'Each graded.\n{{"scores": [{scores}]}}\nSCORE: 7'


def run(ctx: Context) -> None:
    from ray_judge.backends.litellm_backend import load_litellm
    from ray_judge.testing import FakeLLMServer

    n_prompts, k = ctx.sizes.s8_prompts, ctx.sizes.s8_k
    load_litellm()
    saved = {name: os.environ.get(name) for name in _ENV}
    with FakeLLMServer(reply=lambda body: _answer(k)) as server:
        os.environ.update(ANTHROPIC_API_BASE=server.url, ANTHROPIC_API_KEY=_KEY,
                          NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        try:
            rows = []
            for case, cache, grouped in (("pointwise, caching off", False, False),
                                         ("pointwise, caching on", True, False),
                                         (f"grouped ({k} per call), caching on", True, True)):
                server.prompt_cache.clear()
                verdicts, wall = asyncio.run(_judge(n_prompts, k, cache, grouped))
                rows.append(ctx.report.add(_row(case, verdicts, wall, baseline=not cache)))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    off, on, grouped_row = rows
    ctx.report.relate("8", off, [on, grouped_row])
    input_cut = 1 - on.extra["input_usd_per_1k"] / off.extra["input_usd_per_1k"]
    total_cut = 1 - on.extra["usd_per_1k"] / off.extra["usd_per_1k"]
    ctx.report.targets += [
        Target("8", "input cost per verdict, caching on vs off", ">= 70% lower",
               100 * input_cut, input_cut >= 0.70),
        Target("8", "total cost per verdict, caching on vs off", ">= 40% lower",
               100 * total_cut, total_cut >= 0.40),
    ]


_KEY = "sk-ant-api03-bench-dummy"
_ENV = ("ANTHROPIC_API_BASE", "ANTHROPIC_API_KEY", "NO_PROXY", "no_proxy")


def _workload(n_prompts: int, k: int):
    from ray_judge.judging.rubric import Rubric

    # An origin-sized rubric (about 7 KB), tasks of about 2 KB, responses of about 1 KB.
    rubric = Rubric.from_text("Grade {response} against {reference}: check each step, "
                              "name the first wrong one. " * 90)
    tasks = [f"Task {p}: prove the claim below, citing each lemma you use. " * 34
             for p in range(n_prompts)]
    responses = [[f"Response {j} to task {p}: step one holds because of the lemma. " * 17
                  for j in range(k)] for p in range(n_prompts)]
    return rubric, tasks, responses


async def _judge(n_prompts: int, k: int, cache: bool, grouped: bool) -> tuple[list[Any], float]:
    from ray_judge.backends.litellm_backend import LiteLLMBackend
    from ray_judge.config import JudgeConfig
    from ray_judge.judging.catalog import JudgeCatalog
    from ray_judge.judging.runner import JudgeRunner
    from ray_judge.spec import BackendSpec
    from ray_judge.verdict import GroupRequest, JudgeRequest

    rubric, tasks, responses = _workload(n_prompts, k)
    config = JudgeConfig(litellm_transport="lean", prompt_cache=cache, max_attempts=1,
                         backoff_s=0.0)
    backend = LiteLLMBackend(BackendSpec.litellm(MODEL), config)
    runner = JudgeRunner(backend, JudgeCatalog.build(config, rubric=rubric))
    await backend.prepare()
    verdicts: list[Any] = []
    start = time.perf_counter()
    try:
        for task, answers in zip(tasks, responses, strict=True):
            if grouped:
                verdicts += await runner.judge_group(GroupRequest(task, tuple(answers),
                                                                  "42", judge="group"))
            else:
                for answer in answers:
                    verdicts.append(await runner.judge(JudgeRequest(task, answer, "42")))
    finally:
        await backend.aclose()
    return verdicts, time.perf_counter() - start


def _row(case: str, verdicts: list[Any], wall_s: float, *, baseline: bool) -> Row:
    from ray_judge.backends.litellm_backend import load_litellm

    info = load_litellm().get_model_info(MODEL)
    full, read, write = (info["input_cost_per_token"], info["cache_read_input_token_cost"],
                         info["cache_creation_input_token_cost"])
    # A group's members each carry a share of its call's tokens and cost; the call
    # itself is counted on one of them.
    calls = [v for v in verdicts if v.counts_call]
    input_usd = sum((v.input_tokens - (v.cache_read_tokens or 0) - (v.cache_write_tokens or 0))
                    * full + (v.cache_read_tokens or 0) * read
                    + (v.cache_write_tokens or 0) * write for v in verdicts)
    usd = sum(v.cost_usd or 0.0 for v in verdicts)
    n = len(verdicts)
    per_1k, input_per_1k = 1000 * usd / n, 1000 * input_usd / n
    tokens = {name: sum(getattr(v, name) or 0 for v in verdicts)
              for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens")}
    return Row("8", case, baseline=baseline, n=n, ok=sum(v.ok for v in verdicts),
               wall_s=wall_s, rate=per_1k, unit="USD/1k",
               note=(f"input ${input_per_1k:.2f}/1k; {len(calls)} calls, "
                     f"{tokens['input_tokens']:,} input tokens, "
                     f"{tokens['cache_read_tokens']:,} read from cache, "
                     f"{tokens['cache_write_tokens']:,} written"),
               extra={"usd_per_1k": per_1k, "input_usd_per_1k": input_per_1k,
                      "calls": len(calls), **tokens})
