"""Provider prompt caching, end to end through the fake providers (real HTTP on 127.0.0.1,
real LiteLLM): where the breakpoints land on both LiteLLM paths, what the fake Anthropic
and OpenAI APIs report, how the usage and LiteLLM's cache prices reach the Verdict."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from ray_judge.backends.ccode_output import parse_cli_output
from ray_judge.backends.litellm_backend import LiteLLMBackend, load_litellm
from ray_judge.backends.prompt_cache import cache_messages, min_cache_tokens
from ray_judge.config import JudgeConfig
from ray_judge.judging.catalog import JudgeCatalog
from ray_judge.judging.definition import JudgeDefinition
from ray_judge.judging.groups.pairwise import render_pair
from ray_judge.judging.groups.prompt import GroupLayout, render_group
from ray_judge.judging.rubric import Rubric
from ray_judge.judging.runner import JudgeRunner
from ray_judge.judging.template import caching_hint
from ray_judge.pool.stats import JudgeStats
from ray_judge.prompt import JudgePrompt
from ray_judge.spec import BackendSpec
from ray_judge.testing.prompt_cache import PromptCaches
from ray_judge.verdict import JudgeRequest

pytestmark = pytest.mark.usefixtures("provider_env")

SONNET = "anthropic/claude-sonnet-4-5"
HAIKU = "anthropic/claude-3-5-haiku-20241022"
GPT = "openai/gpt-4o"
#: an origin-sized rubric: about 7 KB, 1,750 tokens by chars / 4
LONG_RUBRIC = Rubric.from_text("Grade {response} against {reference}: check each step. " * 130)
LONG_TASK = "Prove that the sum of two even numbers is even, citing each lemma. " * 70


def backend(model: str, transport: str, **config) -> LiteLLMBackend:
    return LiteLLMBackend(BackendSpec.litellm(model), JudgeConfig(
        litellm_transport=transport, max_attempts=1, backoff_s=0.0, **config))


async def _calls(b: LiteLLMBackend, prompts: list[JudgePrompt]):
    await b.prepare()
    try:
        return [await b.complete(p, timeout=30.0) for p in prompts]
    finally:
        await b.aclose()


def run(model: str, transport: str, prompts: list[JudgePrompt], server, **config):
    """The completions of ``prompts`` in order, from a cold cache, and the bodies sent."""
    server.prompt_cache.clear()
    before = len(server.requests)
    completions = asyncio.run(_calls(backend(model, transport, **config), prompts))
    return completions, [r.body for r in server.requests[before:]]


def prompt(rubric: Rubric = LONG_RUBRIC, task: str = LONG_TASK, response: str = "4",
           reference: str | None = "4") -> JudgePrompt:
    return rubric.render(JudgeRequest(task, response, reference), 20_000)


def marks(body) -> list[str]:
    """The text of every block with a cache_control mark, in the order sent."""
    out = [b["text"] for b in body.get("system") or () if isinstance(b, dict)
           and "cache_control" in b]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            out += [b["text"] for b in content if "cache_control" in b]
    return out


def user_text(body) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


# -- where the breakpoints land ------------------------------------------------------

@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_breakpoints_end_the_system_prompt_and_the_shared_blocks(server, transport):
    p = prompt()
    _, [body] = run(SONNET, transport, [p], server)
    assert marks(body) == [p.system, p.user[:p.shared]]
    assert p.user[:p.shared].endswith("<<<END REFERENCE>>>\n\n")
    response_block = body["messages"][0]["content"][-1]
    assert "cache_control" not in response_block
    assert response_block["text"].startswith("<<<BEGIN RESPONSE>>>")
    assert user_text(body) == p.user  # the model reads the same text
    for block in body["system"]:
        assert block.get("cache_control") in (None, {"type": "ephemeral"})


def test_both_paths_send_the_same_marked_body(server):
    prompts = [prompt(), prompt(task="short task"), prompt(rubric=Rubric.default())]
    old = run(SONNET, "litellm", prompts, server)
    new = run(SONNET, "lean", prompts, server)
    assert all("aiohttp" in r.headers.get("user-agent", "") for r in server.requests[-3:])
    assert new[1] == old[1]
    assert new[0] == old[0]  # tokens, cache reads and writes, cost


@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_no_breakpoint_below_the_models_minimum(server, transport):
    short = prompt(rubric=Rubric.default(), task="What is 2+2?")  # ~700 tokens in all
    _, [body] = run(SONNET, transport, [short], server)
    assert marks(body) == []
    # A long task under the default rubric: only the system + shared prefix is long enough.
    task = prompt(rubric=Rubric.default())
    _, [body] = run(SONNET, transport, [task], server)
    assert marks(body) == [task.user[:task.shared]]


def test_haiku_needs_a_longer_prefix_and_litellm_knows_best():
    litellm = load_litellm()
    assert min_cache_tokens(litellm, SONNET) == 1024
    assert min_cache_tokens(litellm, HAIKU) == 2048
    assert min_cache_tokens(litellm, "anthropic/claude-haiku-4-5") == 4096  # LiteLLM's map
    assert min_cache_tokens(litellm, "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0") == 1024
    assert min_cache_tokens(litellm, "vertex_ai/claude-sonnet-4-5") == 1024
    for model in (GPT, "hosted_vllm/Qwen/Qwen3-8B", "bedrock/amazon.nova-pro-v1:0",
                  "nonsense/x"):
        assert min_cache_tokens(litellm, model) is None, model
    p = prompt()  # ~2,170 system tokens: with the task over 3,000, the system alone not
    assert [m["content"] if isinstance(m["content"], str) else "blocks"
            for m in cache_messages(p, 3000)] == [p.system, "blocks"]


@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_the_setting_off_sends_plain_strings(server, transport):
    _, [body] = run(SONNET, transport, [prompt()], server, prompt_cache=False)
    assert marks(body) == []
    assert JudgeConfig.from_env({"LLM_JUDGE_PROMPT_CACHE": "off"}).prompt_cache is False
    assert JudgeConfig.from_env({}).prompt_cache is True


@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_openai_routes_get_no_marks(server, transport):
    _, [body] = run(GPT, transport, [prompt()], server)
    assert all(isinstance(m["content"], str) for m in body["messages"])


# -- usage and cost read back ----------------------------------------------------------

def _price(model: str) -> dict:
    info = load_litellm().get_model_info(model)
    return {k: info[k] for k in ("input_cost_per_token", "output_cost_per_token",
                                 "cache_read_input_token_cost",
                                 "cache_creation_input_token_cost") if info.get(k)}


@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_anthropic_cache_write_then_read_then_miss_priced_by_litellm(server, transport):
    first, second = prompt(response="4"), prompt(response="5")
    other = prompt(task="An unrelated task. " * 300)  # same rubric, other task
    (write, read, partial), _ = run(SONNET, transport, [first, second, other], server)
    price = _price("claude-sonnet-4-5")
    assert write.cache_read_tokens == 0 and write.cache_write_tokens > 1024
    assert read.cache_write_tokens == 0 and read.cache_read_tokens == write.cache_write_tokens
    # The rubric prefix is read, the new task written.
    assert 0 < partial.cache_read_tokens < read.cache_read_tokens
    assert partial.cache_write_tokens > 0
    for c in (write, read, partial):
        plain = c.input_tokens - c.cache_read_tokens - c.cache_write_tokens
        expected = (plain * price["input_cost_per_token"]
                    + c.cache_read_tokens * price["cache_read_input_token_cost"]
                    + c.cache_write_tokens * price["cache_creation_input_token_cost"]
                    + c.output_tokens * price["output_cost_per_token"])
        assert c.cost_usd == pytest.approx(expected, rel=1e-9)
    assert read.cost_usd < write.cost_usd / 3
    # Off: nothing cached, every input token at the full price.
    (again,), _ = run(SONNET, transport, [second], server, prompt_cache=False)
    assert (again.cache_read_tokens, again.cache_write_tokens) == (0, 0)


@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_openai_cached_tokens_priced_by_litellm(server, transport):
    first, second = prompt(response="4"), prompt(response="5")
    (miss, hit), _ = run(GPT, transport, [first, second], server)
    assert (miss.cache_read_tokens, miss.cache_write_tokens) == (0, 0)
    assert hit.cache_read_tokens >= 1024 and hit.cache_read_tokens % 128 == 0
    assert hit.cache_write_tokens == 0
    price = _price("gpt-4o")
    expected = ((hit.input_tokens - hit.cache_read_tokens) * price["input_cost_per_token"]
                + hit.cache_read_tokens * price["cache_read_input_token_cost"]
                + hit.output_tokens * price["output_cost_per_token"])
    assert hit.cost_usd == pytest.approx(expected, rel=1e-9)
    assert hit.cost_usd < miss.cost_usd


def test_unpriced_cache_is_none_never_a_guess(server):
    (c,), _ = run("anthropic/claude-3-opus-20240229", "lean", [prompt()], server)
    assert c.cache_write_tokens > 0 and c.cost_usd is None


# -- the fake Anthropic API's caching semantics ------------------------------------------

def _body(system_chars: int, user_chars: int, *, model="claude-sonnet-4-5", mark=True,
          response="r" * 40) -> dict:
    mark_ = {"cache_control": {"type": "ephemeral"}} if mark else {}
    return {"model": model,
            "system": [{"type": "text", "text": "s" * system_chars, **mark_}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "u" * user_chars, **mark_},
                {"type": "text", "text": response}]}]}


def test_fake_anthropic_writes_reads_expires_and_respects_minimums():
    now = [0.0]
    caches = PromptCaches(clock=lambda: now[0])
    body = _body(4400, 4400)
    first = caches.anthropic(body, 2230)
    prefix = first["cache_creation_input_tokens"]  # both blocks' text, / 4
    assert 2200 <= prefix <= 2210 and first["cache_read_input_tokens"] == 0
    assert first["input_tokens"] == 2230 - prefix
    now[0] = 299.0
    assert caches.anthropic(_body(4400, 4400, response="other"), 2230)[
        "cache_read_input_tokens"] == prefix
    now[0] = 598.0  # the read refreshed the 5 minutes
    assert caches.anthropic(body, 2230)["cache_read_input_tokens"] == prefix
    now[0] = 1000.0  # cold again
    assert caches.anthropic(body, 2230)["cache_creation_input_tokens"] == prefix
    # Another user prefix: the system prefix is read, the rest written.
    other = caches.anthropic(_body(4400, 4404), 2231)
    assert 1100 <= other["cache_read_input_tokens"] <= 1105
    assert other["cache_read_input_tokens"] + other["cache_creation_input_tokens"] == prefix + 1
    # Under the minimum (Haiku: 2,048): no cache at all; no marks: none either.
    assert caches.anthropic(_body(4400, 3000, model="claude-3-5-haiku"), 1900)[
        "cache_creation_input_tokens"] == 0
    assert caches.anthropic(_body(8000, 8000, mark=False), 4010)[
        "cache_creation_input_tokens"] == 0


def test_fake_openai_caches_prompts_over_1024_tokens_in_128_token_steps():
    caches = PromptCaches()
    small = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 4000}]}
    assert caches.openai(small, 1000) == caches.openai(small, 1000) == 0
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 6000}]}
    assert caches.openai(big, 1505) == 0
    assert caches.openai(big, 1505) == 1408


# -- the CLI's usage ------------------------------------------------------------------

def test_cli_usage_carries_cache_reads_and_writes():
    out = json.dumps({
        "type": "result", "subtype": "success", "is_error": False, "result": "SCORE: 7",
        "total_cost_usd": 0.0123, "usage": {
            "input_tokens": 12, "cache_creation_input_tokens": 3000,
            "cache_read_input_tokens": 9000, "output_tokens": 9}})
    c = parse_cli_output(out, model="claude-sonnet-4-5", now=0.0, context={})
    assert (c.input_tokens, c.cache_read_tokens, c.cache_write_tokens) == (12012, 9000, 3000)
    bare = json.dumps({"type": "result", "is_error": False, "result": "SCORE: 7",
                       "usage": {"input_tokens": 12, "output_tokens": 9}})
    c = parse_cli_output(bare, model="m", now=0.0, context={})
    assert (c.cache_read_tokens, c.cache_write_tokens) == (None, None)


# -- the renderers' shared prefix, the text unchanged ------------------------------------

def test_every_renderer_marks_the_part_before_the_first_response():
    p = prompt()
    assert p.user[p.shared:].startswith("<<<BEGIN RESPONSE>>>")
    assert prompt(reference=None).user[:prompt(reference=None).shared].endswith(
        "<<<END PROMPT>>>\n\n")
    group = render_group("Grade them.", "task", ["a", "b", "c"], "ref",
                         GroupLayout((0, 1, 2)), max_input_chars=1000,
                         fields={"notes": "n"})
    assert group.user[group.shared:].startswith("<<<BEGIN RESPONSE 1>>>")
    assert "<<<BEGIN NOTES>>>" in group.user[:group.shared]
    pair = render_pair("Compare.", "task", "a", "b", None, max_input_chars=1000)
    assert pair.user[pair.shared:].startswith("<<<BEGIN RESPONSE A>>>")
    templated = JudgeDefinition(name="t", system="Grade.",
                                user="Task:\n{prompt}\nAnswer:\n{response}")
    rendered = templated.with_defaults(score_max=10, max_input_chars=1000,
                                       rubric=Rubric.default()).render(
        JudgeRequest("task", "ans"))
    assert rendered.user[:rendered.shared].endswith("Answer:\n")
    assert rendered.user[rendered.shared:].startswith("<<<BEGIN RESPONSE>>>")
    with pytest.raises(ValueError, match="shared must be"):
        JudgePrompt("s", "u", shared=5)


def test_a_template_with_the_response_first_gets_a_caching_hint(caplog):
    assert caching_hint("{prompt}\n{response}") is None
    assert caching_hint(None) is None
    hint = caching_hint("{response}\n{prompt}\n{reference}")
    assert "{prompt}, {reference}" in hint
    late = JudgeDefinition(name="late", system="Grade.", user="{response}\n{prompt}")
    catalog = JudgeCatalog.build(JudgeConfig(), judges=[late])
    assert [name for name, _ in catalog.caching_hints()] == ["late"]


# -- through the runner to the Verdict, and into status ------------------------------------

@pytest.mark.parametrize("transport", ["litellm", "lean"])
def test_verdicts_carry_cache_tokens_summed_over_samples(server, transport):
    server.prompt_cache.clear()
    sampled = JudgeDefinition(name="sampled", samples=3, system=LONG_RUBRIC.system,
                              user="{prompt}\n{reference}\n{response}")
    b = backend(SONNET, transport)
    runner = JudgeRunner(b, judges=[sampled])

    async def go():
        await b.prepare()
        try:
            first = await runner.judge(JudgeRequest(LONG_TASK, "4", "4", judge="sampled"))
            second = await runner.judge(JudgeRequest(LONG_TASK, "5", "4", judge="sampled"))
            return first, second
        finally:
            await b.aclose()

    first, second = asyncio.run(go())
    assert first.ok and second.ok
    # The first's three samples: one writes the prefix, the others may read it.
    assert first.cache_write_tokens > 0
    assert second.cache_read_tokens > 0 and second.cache_write_tokens == 0
    assert second.input_tokens > second.cache_read_tokens
    stats = JudgeStats()
    for v in (first, second):
        stats.record(dataclasses.replace(v, backend="litellm:" + SONNET))
    report = stats.snapshot()["prompt_cache"]["litellm:" + SONNET]
    read = first.cache_read_tokens + second.cache_read_tokens
    assert report["read_tokens"] == read
    assert report["hit_ratio"] == round(read / (first.input_tokens + second.input_tokens), 4)
