"""Group and pairwise judging through the real pool on a real Ray cluster.

Two judges share one cluster. ``fake_judge`` runs the FakeBackend, whose model scores
every response of a group (or pair) from the text of its own data block
(:func:`~ray_judge.backends.fake.content_score`), so a Verdict that lands on another
response shows. ``llm_judge`` runs the real LiteLLM backend against the fake provider
on 127.0.0.1, whose answers each test scripts, and which counts the calls; with the CLI
installed, it is switched to the real Claude Code CLI against the fake Messages API.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.ccode_support import real_cli
from tests.cli_support import CLI

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec, JudgeDefinition, Status  # noqa: E402
from ray_judge.backends.fake import content_score  # noqa: E402
from ray_judge.markers import neutralise  # noqa: E402
from ray_judge.selection.override_file import remove_override, write_override  # noqa: E402
from ray_judge.testing import Behaviour, FakeLLMServer  # noqa: E402
from ray_judge.testing._wire import input_tokens  # noqa: E402

pytestmark = pytest.mark.ray
FAKE = {"litellm": "ray_judge.backends.fake:FakeBackend"}
SPEC = "litellm:openai/group-judge"
CCODE = "ccode-4-sonnet"
NAMES = {"fake": "judge_groups_fake", "llm": "judge_groups_llm"}
JUDGES = [
    JudgeDefinition(name="group_fb", kind="group", correction_turns=1, fallback="pointwise"),
    JudgeDefinition(name="group_strict", kind="group", correction_turns=1),
]


def scores_text(scores: list[Any]) -> str:
    return f"Graded each.\n{json.dumps({'scores': scores})}"


def model_calls(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests
            if r.path in ("/v1/messages", "/v1/chat/completions", "/chat/completions")]


def group_calls(server: FakeLLMServer) -> list[str]:
    """The text of each model call that carried a group (RESPONSE 1 ... blocks)."""
    texts = [json.dumps(r.body) for r in model_calls(server)]
    return [t for t in texts if "<<<BEGIN RESPONSE 1>>>" in t]


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_judge(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("groups-fake")
    env = {"LLM_JUDGE_NAME": "litellm:fake/groups", "LLM_JUDGE_NUM_WORKERS": "2",
           "LLM_JUDGE_BACKEND_FILE": str(root / ".judge_backend")}
    handle = ray_judge.start_judge(name=NAMES["fake"], env=env, backend_registry=FAKE)
    yield handle
    ray_judge.stop_judge(name=NAMES["fake"])


@pytest.fixture(scope="module")
def backend_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("groups-llm") / ".judge_backend"


@pytest.fixture(scope="module")
def llm_judge(cluster, server, backend_file):
    env = {"LLM_JUDGE_NAME": SPEC, "LLM_JUDGE_NUM_WORKERS": "2",
           "LLM_JUDGE_BACKEND_FILE": str(backend_file), "LLM_JUDGE_MAX_ATTEMPTS": "2",
           "LLM_JUDGE_BACKOFF": "0.01",
           "LLM_JUDGE_TIMEOUT": "60", "LLM_JUDGE_CACHE_SIZE": "0",
           # the model calls and scripted answers here are the tests' own: no canary calls
           "LLM_JUDGE_CANARY_SHARE": "0",
           "OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-test-groups",
           "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "sk-test-groups",
           "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if CLI:
        env["CLAUDE_CLI_PATH"] = CLI
    handle = ray_judge.start_judge(name=NAMES["llm"], env=env, judges=JUDGES)
    warm = ray.get(handle.score_batch.remote(
        [{"prompt": "p", "response": str(i)} for i in range(4)]), timeout=180)
    assert all(v.ok for v in warm), warm
    yield handle
    ray_judge.stop_judge(name=NAMES["llm"])


@pytest.fixture
def fake(server, llm_judge, backend_file):
    server.reset()
    yield server
    remove_override(backend_file)
    ray.get(llm_judge.refresh_backend.remote(), timeout=30)


# ------------------------------------------------------------- shuffle and un-shuffle


def test_hundreds_of_random_groups_each_verdict_lands_on_its_own_response(fake_judge):
    rng = random.Random(20261201)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa <<<END RESPONSE 1>>>"
    groups = []
    for g in range(300):
        k = rng.randint(1, 16)
        groups.append({"prompt": f"task {g}", "metadata": g, "responses": [
            " ".join(rng.choice(words.split()) for _ in range(rng.randint(1, 12)))
            + f" #{rng.random()}" for _ in range(k)]})
    # one call for the whole step, plus some single score_group calls beside it
    ref = fake_judge.score_batch.remote(groups)
    singles = [fake_judge.score_group.remote(g["prompt"] + " alone", g["responses"])
               for g in groups[:20]]
    results = ray.get(ref, timeout=300)
    shuffled = 0
    for group, verdicts in zip(groups, results, strict=True):
        assert isinstance(verdicts, list) and len(verdicts) == len(group["responses"])
        for i, (response, verdict) in enumerate(zip(group["responses"], verdicts, strict=True)):
            assert verdict.ok, verdict
            # the fake saw the neutralised text; neutralising is the same on both sides
            shown = neutralise(response)
            assert verdict.score == content_score(shown) / 10, (group["metadata"], i)
            assert verdict.metadata == group["metadata"]
            place = verdict.extra["group"]
            assert place["index"] == i and place["order"][place["position"] - 1] == i
            assert verdict.judge == "group" and verdict.judge_version
        shuffled += verdicts[0].extra["group"]["order"] != sorted(
            verdicts[0].extra["group"]["order"])
    assert shuffled > 200  # the judge saw most groups in another order than the caller's
    for group, verdicts in zip(groups[:20], ray.get(singles, timeout=120), strict=True):
        assert [v.score for v in verdicts] == [
            content_score(neutralise(r)) / 10
            for r in group["responses"]]


def test_a_group_is_cached_whole_and_status_counts_the_calls_saved(fake_judge):
    group = {"prompt": "cache me", "responses": ["one", "two", "three"]}
    before = ray.get(fake_judge.status.remote())["groups"]
    first = ray.get(fake_judge.score_batch.remote([group]))[0]
    again = ray.get(fake_judge.score_group.remote("cache me", ["one", "two", "three"]))
    assert [v.score for v in again] == [v.score for v in first]
    assert all(v.cached for v in again) and not any(v.cached for v in first)
    after = ray.get(fake_judge.status.remote())["groups"]
    assert after["groups"] == before["groups"] + 1  # the cached one made no call
    assert after["calls_saved"] == before["calls_saved"] + 2


# ------------------------------------------------------------------- calls per step


def test_a_step_of_64_groups_of_8_in_one_score_batch_is_64_backend_calls(llm_judge, fake):
    fake.default = Behaviour.ok(scores_text([3, 4, 5, 6, 7, 8, 9, 10]))
    step = [{"prompt": f"GRPO prompt {p}", "reference": str(p),
             "responses": [f"rollout {p}.{j}" for j in range(8)]} for p in range(64)]
    results = ray.get(llm_judge.score_batch.remote(step), timeout=300)
    assert fake.model_calls == 64  # not 512
    assert len(group_calls(fake)) == 64
    verdicts = [v for group in results for v in group]
    assert len(verdicts) == 512 and all(v.ok for v in verdicts)
    assert all(v.judge == "group" and v.backend == SPEC for v in verdicts)
    for group in results:  # the judge's display order, mapped back: a permutation
        order = group[0].extra["group"]["order"]
        assert sorted(v.score for v in group) == [s / 10 for s in range(3, 11)]
        assert [group[i].score for i in order] == [s / 10 for s in range(3, 11)]
    assert ray.get(llm_judge.status.remote())["groups"]["calls_saved"] >= 64 * 7


def test_a_retried_group_call_is_one_retry_in_status_not_one_per_member(llm_judge, fake):
    # a 429 retried, then an answer that does not read and its correction turn
    fake.script(Behaviour.error(429, retry_after=0), Behaviour.ok(scores_text([5])))
    fake.default = Behaviour.ok(scores_text([2, 4, 6, 8]))
    before = ray.get(llm_judge.status.remote())
    verdicts = ray.get(llm_judge.score_group.remote(
        "retried?", [f"retried {i}" for i in range(4)], judge="group_strict"), timeout=120)
    after = ray.get(llm_judge.status.remote())
    assert all(v.ok for v in verdicts) and fake.model_calls == 3
    # each Verdict tells how its call went; the totals count the call once
    assert all((v.attempts, v.format_retries) == (3, 1) for v in verdicts)
    assert after["retries"] - before["retries"] == 1
    assert after["format_retries"] - before["format_retries"] == 1


# --------------------------------------------------------------- failure shapes


SHAPES = {
    "short list": scores_text([5, 5]),
    "long list": scores_text([5, 5, 5, 5]),
    "NaN": 'Graded.\n{"scores": [5, NaN, 5]}',
    "strings": scores_text(["5", "6", "7"]),
    "scale overflow": scores_text([5, 11, 5]),
    "no JSON": "They are all fine.\nSCORE: 8",
    "JSON inside think": '<think>{"scores": [5, 6, 7]}</think>\nAll fine.',
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_failure_shape_fails_the_whole_group_and_the_fallback_recovers(
        llm_judge, fake, shape):
    bad = SHAPES[shape]
    responses = [f"{shape} response {i}" for i in range(3)]
    fake.script(Behaviour.ok(bad), Behaviour.ok(bad))  # the answer and its correction
    strict = ray.get(llm_judge.score_group.remote(f"{shape}?", responses,
                                                  judge="group_strict"), timeout=120)
    assert [v.status for v in strict] == [Status.PARSE_ERROR] * 3, strict
    # the raw text is kept (LiteLLM moves a leading <think> span out of it)
    assert all(v.score is None and v.raw and v.raw.strip() in bad and v.format_retries == 1
               for v in strict)
    assert fake.model_calls == 2
    # the correction turn quoted the problem and went to the same backend
    assert "could not be read" in json.dumps(model_calls(fake)[1].body)

    fake.reset()
    fake.script(Behaviour.ok(bad), Behaviour.ok(bad))  # then the default: "SCORE: 8"
    before = ray.get(llm_judge.status.remote(), timeout=60)
    recovered = ray.get(llm_judge.score_group.remote(f"{shape}??", responses,
                                                     judge="group_fb"), timeout=120)
    assert all(v.ok and v.score == 0.8 for v in recovered), recovered
    assert all(v.extra["fallback"] == "pointwise" for v in recovered)
    assert all(v.extra["group_error"] for v in recovered)
    assert fake.model_calls == 2 + 3  # the group, its correction, one per member
    # What the failed group call spent is still counted, once: its attempts and its
    # correction turn on the member shown first, its tokens shared over the members.
    counted = [v for v in recovered if v.counts_call]
    assert sum(v.attempts for v in counted) == 5
    assert sum(v.format_retries for v in counted) == 1
    assert sum(v.transport_retries for v in counted) == 0
    assert sum(v.input_tokens for v in recovered) == sum(
        input_tokens(call.body) for call in model_calls(fake))
    after = ray.get(llm_judge.status.remote(), timeout=60)
    assert after["format_retries"] - before["format_retries"] == 1
    assert after["retries"] == before["retries"]
    assert after["input_tokens"] - before["input_tokens"] == sum(
        v.input_tokens for v in recovered)


# --------------------------------------------------------------------- splitting


def test_a_group_of_40_is_three_balanced_chunks_sharing_an_anchor(llm_judge, fake):
    fake.default = Behaviour.ok(scores_text([7] * 14))
    responses = [f"member-{i:02d} says {i * 7}" for i in range(40)]
    verdicts = ray.get(llm_judge.score_group.remote("split me", responses), timeout=120)
    assert all(v.ok and v.score == 0.7 for v in verdicts), verdicts
    calls = group_calls(fake)
    assert len(calls) == 3 and fake.model_calls == 3
    for text in calls:
        assert "<<<BEGIN RESPONSE 14>>>" in text and "RESPONSE 15>>>" not in text
        assert responses[0] in text  # the anchor, in every chunk
    for response in responses[1:]:
        assert sum(response in text for text in calls) == 1
    assert {v.extra["split"]["chunks"] for v in verdicts} == {3}
    assert verdicts[0].extra["split"]["anchor_scores"] == [0.7, 0.7, 0.7]
    assert ray.get(llm_judge.status.remote())["groups"]["split"] >= 1


# --------------------------------------------------------------------- comparisons


def test_compare_detects_a_first_position_bias(llm_judge, fake):
    fake.default = Behaviour.ok('RESPONSE A is better.\n{"preference": 10}')
    before = ray.get(llm_judge.status.remote())["groups"]["inconsistent"]
    verdict = ray.get(llm_judge.compare.remote("Which?", "answer a", "answer b"), timeout=60)
    assert verdict.ok and verdict.score == 0.5, verdict
    assert verdict.extra["position_consistent"] is False
    assert verdict.judge == "pairwise" and verdict.judge_version
    assert fake.model_calls == 2
    bodies = [json.dumps(c.body) for c in model_calls(fake)]
    assert any(b.index("answer a") < b.index("answer b") for b in bodies)
    assert any(b.index("answer b") < b.index("answer a") for b in bodies)
    assert ray.get(llm_judge.status.remote())["groups"]["inconsistent"] == before + 1


def test_compare_with_a_fair_judge_is_consistent(fake_judge):
    a, b = "a short answer", "another answer entirely"
    verdict = ray.get(fake_judge.compare.remote("Which?", a, b))
    expected = 0.5 + (content_score(a) - content_score(b)) / 20
    assert verdict.ok and verdict.score == pytest.approx(expected)
    assert verdict.extra["position_consistent"] is True
    assert verdict.extra["gap"] == pytest.approx(0, abs=1e-9)


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, words", [
    (lambda j: j.score_group.remote("p", []), ValueError, "responses is empty"),
    (lambda j: j.score_group.remote("p", "abc"), TypeError, "list of strings"),
    (lambda j: j.score_group.remote("p", ["a", 3]), TypeError, "responses[1]"),
    (lambda j: j.score_group.remote("p", ["a"], judge="default"), ValueError,
     "not a group judge"),
    (lambda j: j.score_group.remote("p", ["a"], judge="nope"), ValueError, "nope"),
    (lambda j: j.compare.remote("p", "a", "b", judge="group"), ValueError,
     "not a pairwise judge"),
    (lambda j: j.score_batch.remote([{"prompt": "p", "responses": ["a"], "x": 1}]),
     ValueError, "unknown field"),
])
def test_bad_group_input_raises_to_the_caller_and_the_judge_serves_on(fake_judge, call,
                                                                       error, words):
    with pytest.raises(error) as info:
        ray.get(call(fake_judge))
    assert words in str(info.value)
    assert ray.get(fake_judge.score_group.remote("p", ["still here"]))[0].ok


# ------------------------------------------------------------------- the real CLI


@real_cli
def test_through_the_real_cli_one_call_per_group(llm_judge, fake, backend_file):
    write_override(backend_file, BackendSpec.parse(CCODE))
    assert ray.get(llm_judge.refresh_backend.remote(), timeout=30)["backend"] == CCODE
    fake.default = Behaviour.ok(scores_text([2, 4, 6, 8]))
    responses = [f"cli response {i}" for i in range(4)]
    verdicts = ray.get(llm_judge.score_group.remote("Through the CLI?", responses),
                       timeout=180)
    assert all(v.ok and v.backend == CCODE for v in verdicts), verdicts
    assert sorted(v.score for v in verdicts) == [0.2, 0.4, 0.6, 0.8]
    [call] = group_calls(fake)  # one CLI judgement for the group
    assert all(r in call for r in responses)
    order = verdicts[0].extra["group"]["order"]
    assert [verdicts[i].score for i in order] == [0.2, 0.4, 0.6, 0.8]
