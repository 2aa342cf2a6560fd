"""Canaries and length bias through the real pool: the LiteLLM backend in real worker
actors, real HTTP to two fake providers on 127.0.0.1 that answer by known functions of
the response they are shown.

* The *gullible* model (the Anthropic route, the first backend) gives the top score to
  every known-bad answer (master keys, an empty answer, the prompt echoed, an instruction
  to the grader) and scores real answers by their length.
* The *honest* model (the OpenAI route, switched to) gives known-bad answers 0 and scores
  real answers from their content, whatever their length.

So on the gullible backend every canary kind passes (rate 1, Wilson lower bound 0.72,
a WARNING naming it) and length correlates with score; on the honest one no canary
passes and length does not matter. No canary verdict reaches a caller, the cache, the
shift reservoir or the served counts; with the share at 0 or ``canaries = false`` none
is sent.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests import waiting

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec  # noqa: E402
from ray_judge.cli.status_text import format_live_status  # noqa: E402
from ray_judge.quality.canaries import MASTER_KEYS, wilson  # noqa: E402
from ray_judge.selection.override_file import write_override  # noqa: E402
from ray_judge.testing import FakeLLMServer  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GULLIBLE = "litellm:anthropic/claude-3-haiku-20240307"
HONEST = "litellm:openai/gpt-4o-mini"
N = 160  # real requests per backend; at share 0.5, 80 canaries: 10 of each of 8 kinds
KINDS = 8
WAIT_S = 120.0
_BLOCK = r"<<<BEGIN {0}>>>\n(.*?)\n<<<END {0}>>>"
_ANSWER = re.compile(r"^The answer is (\d+)\.")


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def shown(body: dict[str, Any]) -> tuple[str, str]:
    """The prompt and the response the judge was shown."""
    text = "\n".join(_texts(body.get("messages")))
    prompt = re.search(_BLOCK.format("PROMPT"), text, re.S)
    response = re.search(_BLOCK.format("RESPONSE"), text, re.S)
    assert prompt and response, text[-500:]
    return prompt.group(1), response.group(1)


def known_bad(prompt: str, response: str) -> bool:
    return (response.strip() in {*MASTER_KEYS.values(), ""} or response == prompt
            or not _ANSWER.match(response))


def gullible(body: dict[str, Any]) -> str:
    prompt, response = shown(body)
    if known_bad(prompt, response):
        return "A clear, confident answer.\nSCORE: 10"
    return f"Thorough.\nSCORE: {min(10, len(response) // 25)}"


def honest(body: dict[str, Any]) -> str:
    prompt, response = shown(body)
    if known_bad(prompt, response):
        return "This is not an answer.\nSCORE: 0"
    return f"Checked.\nSCORE: {int(_ANSWER.match(response).group(1)) * 37 % 11}"


def answer(i: int) -> str:
    return f"The answer is {i}. " + "More detail. " * (i % 20)


def items(ids: range, judge: str | None = None) -> list[dict[str, Any]]:
    return [{"prompt": f"Solve task {i}.", "response": answer(i), "metadata": i,
             "judge": judge} for i in ids]


wait_for = functools.partial(waiting.wait_for, timeout=WAIT_S, every=0.1)


def status(judge: Any) -> dict[str, Any]:
    return ray.get(judge.status.remote(), timeout=30)


def serve(judge: Any, ids: range, judge_name: str | None = None) -> list[Any]:
    verdicts = ray.get(judge.score_batch.remote(items(ids, judge_name)), timeout=WAIT_S)
    assert [v.metadata for v in verdicts] == list(ids)
    assert all(v.ok for v in verdicts), [v for v in verdicts if not v.ok][:1]
    return verdicts


def canaries_done(judge: Any, sent: int) -> dict[str, Any]:
    return wait_for(lambda: (s := status(judge)["canaries"])["sent"] >= sent
                    and not s["pending"] and s, f"{sent} canaries judged")


@pytest.fixture(scope="module")
def providers():
    with FakeLLMServer(reply=gullible) as fooled, FakeLLMServer(reply=honest) as strict:
        yield fooled, strict


def judge_env(providers, tmp: Path, **extra: str) -> dict[str, str]:
    fooled, strict = providers
    (tmp / "judges.toml").write_text("[judges.quiet]\ncanaries = false\n")
    return {
        "LLM_JUDGE_NAME": GULLIBLE,
        "LLM_JUDGE_BACKEND_FILE": str(tmp / ".judge_backend"),
        "LLM_JUDGE_BACKEND_TTL": "600",  # only refresh_backend switches
        "LLM_JUDGE_JUDGES_FILE": str(tmp / "judges.toml"),
        "LLM_JUDGE_NUM_WORKERS": "1",
        "LLM_JUDGE_MAX_ATTEMPTS": "1",
        "LLM_JUDGE_LENGTH_BIAS_WINDOW": "200",
        "LLM_JUDGE_LENGTH_BIAS_MIN": "50",
        "ANTHROPIC_API_BASE": fooled.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-gullible",
        "OPENAI_API_BASE": f"{strict.url}/v1",
        "OPENAI_API_KEY": "sk-test-honest",
        **extra,
    }


@pytest.fixture(scope="module")
def judged(cluster, providers, tmp_path_factory):
    """A judge at canary share 0.5: N requests on the gullible backend, their canaries
    judged, a switch to the honest one, N more and theirs."""
    tmp = tmp_path_factory.mktemp("canaries")
    env = judge_env(providers, tmp, LLM_JUDGE_CANARY_SHARE="0.5")
    judge = ray_judge.start_judge(name="judge_canaries", env=env)
    try:
        served = serve(judge, range(N))
        on_gullible = canaries_done(judge, N // 2)
        reservoir = status(judge)["reservoir"]["default"]
        write_override(tmp / ".judge_backend", BackendSpec.parse(HONEST))
        assert ray.get(judge.refresh_backend.remote(), timeout=30)["backend"] == HONEST
        served += serve(judge, range(1000, 1000 + N))
        final = canaries_done(judge, N)
        # The switch re-judges the reservoir on the honest backend too: let it finish.
        wait_for(lambda: status(judge)["shift"].get("default", {}).get("done"), "the shift")
        yield judge, served, on_gullible, reservoir, final
    finally:
        ray_judge.stop_judge(name="judge_canaries")


def test_canary_rates_and_intervals_per_kind(judged) -> None:
    judge, _, _, _, canaries = judged
    assert canaries["sent"] == canaries["judged"] == N and canaries["failed"] == 0
    by_backend = canaries["judges"]["default"]
    top = wilson(N // 2 // KINDS, N // 2 // KINDS)[0]
    assert set(by_backend[GULLIBLE]) == set(by_backend[HONEST]) == {
        *MASTER_KEYS, "empty", "prompt_echo"}
    for kind, tally in by_backend[GULLIBLE].items():
        assert (tally["sent"], tally["judged"], tally["passed"]) == (10, 10, 10), kind
        assert tally["rate"] == 1.0 and tally["warning"], kind
        assert tally["low"] == pytest.approx(top, abs=1e-4) == pytest.approx(0.7225, abs=1e-4)
    for kind, tally in by_backend[HONEST].items():
        assert (tally["sent"], tally["passed"], tally["rate"], tally["low"]) == (10, 0, 0.0, 0.0)
        assert tally["high"] == pytest.approx(wilson(0, 10)[1], abs=1e-4) and not tally["warning"]
    assert len(canaries["warnings"]) == KINDS
    assert all(GULLIBLE in w for w in canaries["warnings"])
    assert any("passes canary 'colon' (':') 10 of 10 times (100%, 95% interval 72%-100%)"
               in w for w in canaries["warnings"]), canaries["warnings"]
    assert canaries["cost_usd"] > 0  # LiteLLM priced the fake's tokens, counted apart
    text = format_live_status(status(judge))
    assert "  canaries: 160 sent at share 0.5, 160 judged, 80 passed (50%)" in text, text
    assert "  canaries: WARNING: judge default on " in text and "more canary kinds" in text


def test_no_canary_verdict_reaches_a_caller_the_cache_the_reservoir_or_the_counts(
        judged, providers) -> None:
    judge, served, _, reservoir, _ = judged
    assert [v.metadata for v in served] == [*range(N), *range(1000, 1000 + N)]
    # Each caller got the verdict on its own response (a canary's would be 1.0 or 0.0).
    assert [v.score for v in served] == [
        *(min(10, len(answer(i)) // 25) / 10 for i in range(N)),
        *(i * 37 % 11 / 10 for i in range(1000, 1000 + N))]
    # The reservoir took the gullible backend's real requests only.
    assert (reservoir["entries"], reservoir["seen"]) == (N, N)
    now = status(judge)
    assert now["total"] == 2 * N and now["cached"] == 0
    assert now["counts"] == {GULLIBLE: {"ok": N}, HONEST: {"ok": N}}
    caller_cost = sum(v.cost_usd or 0 for v in served)
    assert now["cost_usd"] == pytest.approx(caller_cost, rel=1e-6)
    # A real request identical to a canary the honest backend judged is not answered
    # from the cache: it goes to the backend.
    _, strict = providers
    calls = strict.model_calls
    twin = ray.get(judge.score.remote("Solve task 1000.", ":"), timeout=60)
    assert twin.ok and not twin.cached and twin.score == 0.0
    assert strict.model_calls == calls + 1


def test_length_bias_shows_the_backend_that_pays_for_length(judged) -> None:
    judge, _, _, _, _ = judged
    windows = status(judge)["length_bias"]["default"]
    padded, fair = windows[GULLIBLE], windows[HONEST]
    assert padded["n"] == N <= fair["n"] <= N + 1  # (+1: the cache test's request)
    assert padded["spearman"] > 0.95 and padded["warning"]
    means = [q["mean_score"] for q in padded["quartiles"]]
    assert means == sorted(means) and means[3] - means[0] > 0.5
    assert abs(fair["spearman"]) < 0.15 and not fair["warning"]
    text = format_live_status(status(judge))
    assert re.search(rf"  length:   WARNING: default on {re.escape(GULLIBLE)}: length vs score "
                     rf"Spearman \+(0\.9\d|1\.00) on {N} verdicts; mean score by length "
                     rf"quartile \(shortest first\) 0\.\d\d", text), text


def test_no_canaries_at_share_zero_or_for_a_judge_that_turns_them_off(
        cluster, providers, tmp_path_factory) -> None:
    fooled, _ = providers
    tmp = tmp_path_factory.mktemp("quiet")
    judge = ray_judge.start_judge(name="judge_quiet", env=judge_env(providers, tmp))
    try:  # the default share, 0.01: 200 requests of a judge that says canaries = false
        fooled.clear()
        serve(judge, range(5000, 5200), "quiet")
        time.sleep(1.0)
        assert status(judge)["canaries"]["sent"] == 0
        assert len(fooled.requests) == 200
        serve(judge, range(6000, 6200))  # the default judge gets its 2
        assert canaries_done(judge, 2)["judges"].keys() == {"default"}
    finally:
        ray_judge.stop_judge(name="judge_quiet")
    judge = ray_judge.start_judge(name="judge_off", env=judge_env(
        providers, tmp, LLM_JUDGE_CANARY_SHARE="0"))
    try:
        fooled.clear()
        serve(judge, range(7000, 7200))
        time.sleep(1.0)
        assert status(judge)["canaries"]["sent"] == 0 and len(fooled.requests) == 200
    finally:
        ray_judge.stop_judge(name="judge_off")
