"""The RL framework adapters, each driven by its framework's own code.

One real Ray cluster and one real judge pool for the module: the LiteLLM backend in real
worker actors, over real HTTP, against :class:`FakeLLMServer` on 127.0.0.1. Its answer
depends on what it is asked: ``SCORE: 8`` (0.8), except for a user message holding
``UNJUDGEABLE``, which gets an answer without a score (a ``parse_error`` verdict); a group
judge's request gets ``{"scores": [8, ...]}``, one per response.

* TRL: ``GRPOTrainer`` trains 2 real steps on CPU on a tiny Qwen2 model built here with a
  tokenizer trained here (no hub download), with :class:`JudgeReward` as its reward.
* verl: its own ``load_reward_manager`` loads ``compute_score`` from
  ``pkg://ray_judge.integrations.verl``; the reward manager's ``run_single`` runs on a
  ``DataProto`` built by hand, concurrently per sample as verl's reward loop does, and
  verl's own ``assemble_rm_scores`` places the scores.
* OpenRLHF: its own ``SingleTurnAgentExecutor`` (openrlhf installed with ``--no-deps``)
  posts to ``ray-judge serve-rm`` in a subprocess. The stand-in: the vLLM engine, which
  cannot run here; ``generate`` returns fixed token ids.
* slime: not on PyPI, so its calling convention (``await rm(args, sample, **kwargs)`` /
  ``await rm(args, samples)`` with ``--group-rm``, ``args`` with the custom config's keys
  as attributes) is reproduced with stand-in ``args``/``Sample`` objects whose fields are
  those of ``slime.utils.types.Sample``.

Each adapter's calls go through :class:`ray_judge.JudgeClient`, whose Ray call count
shows one call per batch the framework hands over; a judge killed mid-call is survived.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge.integrations import openrlhf as rj_openrlhf  # noqa: E402
from ray_judge.integrations import slime as rj_slime  # noqa: E402
from ray_judge.integrations import verl as rj_verl  # noqa: E402
from ray_judge.integrations.reward import judge_client  # noqa: E402
from ray_judge.integrations.trl import JudgeReward  # noqa: E402
from ray_judge.testing import Behaviour, FakeLLMServer  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SPEC = "litellm:openai/judge-rl"
UNJUDGEABLE = "UNJUDGEABLE"
WAIT_S = 120.0


def _user_text(body: dict[str, Any] | None) -> str:
    messages = (body or {}).get("messages") or []
    return "\n".join(m.get("content") or "" for m in messages
                     if isinstance(m, dict) and m.get("role") == "user"
                     and isinstance(m.get("content"), str))


def _reply(body: dict[str, Any]) -> str:
    text = _user_text(body)
    group = text.count("<<<BEGIN RESPONSE ")  # a group judge's numbered response blocks
    if group:
        return json.dumps({"scores": [8] * group})
    if UNJUDGEABLE in text:
        return "I would rather not say."
    return "Looks right.\nSCORE: 8"


def _judged_texts(server: FakeLLMServer) -> list[str]:
    return [_user_text(r.body) for r in server.requests if r.path.endswith("/completions")]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    init_local()
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(reply=_reply) as fake:
        yield fake


@pytest.fixture(scope="module")
def judge_env(server, tmp_path_factory) -> dict[str, str]:
    return {
        "LLM_JUDGE_NAME": SPEC,
        "LLM_JUDGE_BACKEND_FILE": str(tmp_path_factory.mktemp("judge") / ".judge_backend"),
        "LLM_JUDGE_NUM_WORKERS": "2",
        "LLM_JUDGE_CACHE_SIZE": "0",  # every test sees its own requests reach the model
        "LLM_JUDGE_HEDGE": "off",  # ...once each
        "LLM_JUDGE_CANARY_SHARE": "0",  # ...and only theirs
        "OPENAI_API_BASE": f"{server.url}/v1",
        "OPENAI_API_KEY": "sk-test-integrations",
        "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


@pytest.fixture(scope="module")
def judge(cluster, judge_env):
    handle = ray_judge.start_judge(env=judge_env)
    warm = ray.get(handle.score_batch.remote(
        [{"prompt": "p", "response": str(i)} for i in range(4)]), timeout=WAIT_S)
    assert all(v.ok for v in warm), warm
    yield handle
    ray_judge.stop_judge()


@pytest.fixture
def fresh(server, judge):
    """The fake's record and script emptied, the default answer back."""
    server.reset()
    return server


def ray_calls() -> int:
    return judge_client()._started().snapshot()["calls"]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained here on a few lines (no hub download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = ["What is 2+2? 4", "Name a prime. 7", "Capital of France? Paris",
              "The answer is Paris.", UNJUDGEABLE] * 20
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   pad_token="<pad>", eos_token="<eos>")


def tiny_model(tokenizer: Any) -> Any:
    """A 2-layer Qwen2 with a 32-wide hidden state: random weights, real code."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return Qwen2ForCausalLM(config)


# ----------------------------------------------------------------------------------- TRL


def grpo(reward: JudgeReward, output_dir: Path) -> Any:
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = tiny_tokenizer()
    dataset = Dataset.from_dict({
        "prompt": ["What is 2+2?", "Name a prime.", "Capital of France?", "What is 3+3?"],
        "answer": ["four", "seven", "Paris", "six"],
    })
    args = GRPOConfig(output_dir=str(output_dir), max_steps=2, use_cpu=True, bf16=False,
                      per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, logging_steps=1, report_to=[],
                      save_strategy="no", seed=0, log_completions=False)
    return GRPOTrainer(model=tiny_model(tokenizer), reward_funcs=[reward], args=args,
                       train_dataset=dataset, processing_class=tokenizer)


def test_trl_grpo_trains_with_the_judge_as_reward(fresh, tmp_path) -> None:
    seen: list[tuple[list[Any], list[float | None]]] = []

    class Recording(JudgeReward):
        async def __call__(self, prompts, completions, completion_ids=None, **kwargs):
            rewards = await super().__call__(prompts, completions, completion_ids, **kwargs)
            seen.append((list(zip(completions, kwargs["answer"], strict=True)), rewards))
            return rewards

    calls_before = ray_calls()
    trainer = grpo(Recording(reference="answer"), tmp_path)
    trainer.train()

    assert len(seen) == 2, "one reward call per step (4 completions each)"
    judged = _judged_texts(fresh)
    for pairs, rewards in seen:
        assert rewards == [0.8] * len(pairs)
        for completion, answer in pairs:
            # The judge saw this completion beside its own reference.
            assert any(completion in text and f"<<<BEGIN REFERENCE>>>\n{answer}\n" in text
                       for text in judged), (completion, answer)
    assert ray_calls() - calls_before == 2, "one Ray call per batch TRL handed over"
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all("rewards/ray_judge/mean" in e for e in logged)
    assert all(e["judge/ok"] == 4.0 and e["judge/parse_error"] == 0.0 for e in logged)


def test_trl_failed_judgements_are_none_and_training_goes_on(fresh, tmp_path,
                                                            caplog, capfd) -> None:
    fresh.default = Behaviour.ok("No verdict today.")  # every verdict a parse_error
    rewards: list[list[float | None]] = []

    class Recording(JudgeReward):
        async def __call__(self, *args, **kwargs):
            rewards.append(await super().__call__(*args, **kwargs))
            return rewards[-1]

    trainer = grpo(Recording(reference="answer"), tmp_path)
    with caplog.at_level(logging.WARNING):
        trainer.train()  # does not raise

    assert rewards and all(r == [None] * 4 for r in rewards), rewards
    warned = caplog.text + capfd.readouterr().err
    assert "All reward functions returned None" in warned
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(e["judge/parse_error"] == 4.0 for e in logged)


def trl_call(reward: JudgeReward, prompts: list[Any], completions: list[Any],
             **columns: Any) -> tuple[list[float | None], dict[str, float]]:
    """The reward called as GRPOTrainer._calculate_rewards calls it."""
    metrics: dict[str, float] = {}
    rewards = asyncio.run(reward(prompts=prompts, completions=completions,
                                 completion_ids=[[1]] * len(completions), trainer_state=None,
                                 log_metric=metrics.__setitem__,
                                 log_extra=lambda column, values: None, **columns))
    return rewards, metrics


def test_trl_group_option_judges_each_prompts_generations_together(fresh) -> None:
    # TRL hands over each prompt's num_generations completions side by side.
    prompts = ["What is 2+2?"] * 3 + ["Capital of France?"] * 3
    completions = ["4", "four", "5", "Paris", "Lyon", UNJUDGEABLE]
    before = ray_calls()
    rewards, metrics = trl_call(JudgeReward(reference="answer", group=True), prompts,
                                completions, answer=["4"] * 3 + ["Paris"] * 3)
    assert rewards == [0.8] * 6 and metrics["judge/ok"] == 6.0
    assert ray_calls() - before == 1
    groups = [t for t in _judged_texts(fresh) if "<<<BEGIN RESPONSE 1>>>" in t]
    assert len(groups) == 2, "one judge call per prompt's group"
    assert all(t.count("<<<BEGIN RESPONSE ") == 3 for t in groups)


def test_trl_conversational_completion_is_judged_as_a_trajectory(fresh) -> None:
    prompt = [{"role": "system", "content": "You are a geography agent."},
              {"role": "user", "content": "Capital of France? Check the atlas."}]
    completion = [
        {"role": "assistant", "content": "Let me look it up.",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {
             "name": "atlas_lookup", "arguments": json.dumps({"country": "France"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "capital: Paris"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ]
    rewards, _ = trl_call(JudgeReward(reference="answer"), [prompt], [completion],
                          answer=["Paris"])
    assert rewards == [0.8]
    (text,) = _judged_texts(fresh)
    for part in ("Capital of France? Check the atlas.", "Let me look it up.", "atlas_lookup",
                 "capital: Paris", "The capital of France is Paris."):
        assert part in text, part


def test_trl_reward_names_a_missing_column(judge) -> None:
    reward = JudgeReward(reference="gold")
    with pytest.raises(ValueError, match=r"'gold'.*columns: \['answer'\]"):
        asyncio.run(reward(["q"], ["a"], None, answer=["x"], trainer_state=None))


# ---------------------------------------------------------------------------------- verl


def verl_config(**reward_kwargs: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create({"reward": {
        "custom_reward_function": {"path": "pkg://ray_judge.integrations.verl",
                                   "name": "compute_score", "reward_kwargs": reward_kwargs},
        "reward_manager": {"source": "register", "name": "naive",
                           "module": {"path": None, "name": "custom_reward_manager"}},
        "reward_model": {"enable": False},
    }})


def verl_batch(rows: list[tuple[str, str, str]]) -> Any:
    """A DataProto as verl's rollout leaves it: left-padded prompts, right-padded
    responses, the attention mask over both, and the non-tensor columns."""
    import numpy as np
    import torch
    from verl import DataProto

    tokenizer = tiny_tokenizer()
    pad = tokenizer.pad_token_id
    prompt_ids = [tokenizer(q, add_special_tokens=False)["input_ids"] for q, _, _ in rows]
    response_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for _, r, _ in rows]
    p_len = max(map(len, prompt_ids))
    r_len = max(map(len, response_ids)) + 2  # some right padding for every row
    prompts = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompt_ids])
    responses = torch.tensor([r + [pad] * (r_len - len(r)) for r in response_ids])
    mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r)
                         + [0] * (r_len - len(r)) for p, r in zip(prompt_ids, response_ids,
                                                                  strict=True)])
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask,
                 "input_ids": torch.cat([prompts, responses], dim=1)},
        non_tensors={
            "data_source": np.array(["unit"] * len(rows), dtype=object),
            "reward_model": np.array([{"ground_truth": g} for _, _, g in rows], dtype=object),
            "extra_info": np.array([{"question": q, "index": i}
                                    for i, (q, _, _) in enumerate(rows)], dtype=object),
        })


async def verl_reward_loop(manager: Any, data: Any) -> list[dict[str, Any]]:
    # What verl's RewardLoopWorker.compute_score_batch does: run_single per sample, at once.
    return await asyncio.gather(*(manager.run_single(data[i:i + 1])
                                  for i in range(len(data))))


def test_verl_reward_manager_scores_on_the_last_response_token(fresh) -> None:
    pytest.importorskip("verl")
    import numpy as np
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(verl_config(failure_score=-1.0), tiny_tokenizer())
    rows = [("What is 2+2?", "4", "4"), ("Capital of France?", f"{UNJUDGEABLE} Paris", "Paris"),
            ("Name a prime.", "7", "7")]
    data = verl_batch(rows)
    calls_before = ray_calls()
    # The manager runs its executor calls on its own loop, as in verl's reward worker.
    outputs = manager.loop.run_until_complete(verl_reward_loop(manager, data))

    assert [o["reward_score"] for o in outputs] == [0.8, -1.0, 0.8]
    infos = [o["reward_extra_info"] for o in outputs]
    assert all(list(info) == list(rj_verl.RESULT_KEYS) for info in infos), infos
    assert [info["judge_status"] for info in infos] == ["ok", "parse_error", "ok"]
    # verl's own assembly: the first sample's keys, an array per key over all samples.
    extra = {key: np.array([info[key] for info in infos]) for key in infos[0]}
    assert extra["judge_ok"].tolist() == [1.0, 0.0, 1.0]
    rm_scores = manager.assemble_rm_scores(data, [o["reward_score"] for o in outputs])
    valid = data.batch["attention_mask"][:, data.batch["prompts"].size(1):].sum(dim=1)
    for row, length in enumerate(valid.tolist()):
        assert rm_scores[row, length - 1].item() == pytest.approx(outputs[row]["reward_score"])
        assert rm_scores[row].abs().sum().item() == pytest.approx(
            abs(outputs[row]["reward_score"]))
    assert ray_calls() - calls_before < len(rows), "concurrent run_single calls share calls"
    judged = _judged_texts(fresh)
    assert any("What is 2+2?" in t and "<<<BEGIN REFERENCE>>>\n4\n" in t for t in judged)


def test_verl_failure_score_is_required(judge) -> None:
    pytest.importorskip("verl")
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(verl_config(), tiny_tokenizer())
    with pytest.raises(ValueError, match="failure_score is required"):
        manager.loop.run_until_complete(manager.run_single(verl_batch([("q", "a", "g")])))


def test_verl_batch_form_is_one_call(fresh) -> None:
    calls_before = ray_calls()
    results = rj_verl.compute_score_batch(
        ["unit"] * 3, ["4", UNJUDGEABLE, "7"], ["4", "x", "7"],
        [{"question": "q1"}, {"question": "q2"}, {"question": "q3"}], failure_score=0.25)
    assert [r["score"] for r in results] == [0.8, 0.25, 0.8]
    assert ray_calls() - calls_before == 1
    with pytest.raises(ValueError, match=r"extra_info lacks \['prompt'\].*has \['question'\]"):
        rj_verl.compute_score_sync("unit", "a", "g", {"question": "q"}, failure_score=0.0,
                                   prompt_key="prompt")


# ------------------------------------------------------------------------------ OpenRLHF


@pytest.fixture(scope="module")
def reward_server(cluster, judge, tmp_path_factory):
    """``ray-judge serve-rm`` in a subprocess, joined to the test cluster, with a token."""
    token = secrets.token_hex(16)
    token_file = tmp_path_factory.mktemp("rm") / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)  # serve-rm refuses a token others can read
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLM_JUDGE_")},
           "RAY_ADDRESS": cluster}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray_judge.cli", "serve-rm", "--port", "0",
         "--failure-reward", "-0.5", "--token-file", str(token_file)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + WAIT_S
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"serve-rm exited {proc.returncode}: {proc.stdout.read()}")
            if line.startswith("READY "):
                url = line.split()[1]
        assert url is not None, "serve-rm did not come up"
        assert url.startswith("http://127.0.0.1:")
        yield SimpleNamespace(url=url, token=token, proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class StandInEngine:
    """OpenRLHF's vLLM engine cannot run here: ``generate`` answers fixed token ids."""

    def __init__(self, text: str) -> None:
        self.ids = tiny_tokenizer()(text, add_special_tokens=False)["input_ids"]

    async def generate(self, prompt_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(token_ids=list(self.ids), logprobs=None, finish_reason="stop")
        return SimpleNamespace(outputs=[output])


def openrlhf_execute(url: str, prompt: str, label: str, response: str) -> dict[str, Any]:
    pytest.importorskip("openrlhf")
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=url)
    params = SimpleNamespace(max_tokens=16, logprobs=None)
    return asyncio.run(executor.execute(prompt, label, params, 64, tiny_tokenizer(),
                                        StandInEngine(response)))


def with_token(url: str, token: str) -> str:
    return url.replace("http://", f"http://rm:{token}@") + "/get_reward"


def test_openrlhf_executor_gets_the_judges_reward(fresh, reward_server) -> None:
    url = with_token(reward_server.url, reward_server.token)
    out = openrlhf_execute(url, "Capital of France? ", "Paris", "The answer is Paris.")
    assert out["reward"] == [0.8] and out["scores"] == [0.8]
    assert out["extra_logs"] == {"judge_ok": 1, "judge_failed": 0}
    judged = _judged_texts(fresh)
    # The response was cut out of the query by its prompt.
    assert any("<<<BEGIN RESPONSE>>>\nThe answer is Paris.\n" in t
               and "<<<BEGIN PROMPT>>>\nCapital of France? \n" in t
               and "<<<BEGIN REFERENCE>>>\nParis\n" in t for t in judged), judged

    failed = openrlhf_execute(url, "Capital of France? ", "Paris", UNJUDGEABLE)
    assert failed["reward"] == [-0.5]
    assert failed["extra_logs"] == {"judge_ok": 0, "judge_failed": 1, "judge_parse_error": 1}


def test_openrlhf_request_without_the_token_is_refused(fresh, reward_server) -> None:
    import urllib.error
    import urllib.request

    body = json.dumps({"query": ["q a"], "prompts": ["q"], "labels": ["a"]}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        request = urllib.request.Request(reward_server.url + "/get_reward", data=body,
                                         headers={"Content-Type": "application/json",
                                                  **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
    out = openrlhf_execute(reward_server.url + "/get_reward", "q", "a", "resp")
    assert out["reward"] is None  # OpenRLHF's own "no reward" after its retries
    assert _judged_texts(fresh) == []  # nothing reached the judge

    request = urllib.request.Request(
        reward_server.url + "/get_reward", data=json.dumps(
            {"query": ["other text"], "prompts": ["q"], "labels": ["a"]}).encode(),
        headers={"Authorization": f"Bearer {reward_server.token}"})
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request, timeout=30)
    assert bad.value.code == 400
    assert "query[0] does not contain prompts[0]" in bad.value.read().decode()


def test_reward_server_answer_is_numbers_only() -> None:
    server = rj_openrlhf.RewardServer(failure_reward=0)
    verdicts = [ray_judge.Verdict(0.5, "ok"), ray_judge.Verdict.failure("timeout", "slow")]
    answer = server.answer(verdicts)
    assert answer == {"rewards": [0.5, 0.0], "scores": [0.5, 0.0],
                      "extra_logs": {"judge_ok": 1, "judge_failed": 1, "judge_timeout": 1}}
    with pytest.raises(ValueError, match="--failure-reward is required"):
        rj_openrlhf.RewardServer(failure_reward=None)
    assert "s3cret" not in repr(rj_openrlhf.RewardServer(failure_reward=0, token="s3cret"))


# --------------------------------------------------------------------------------- slime


@dataclasses.dataclass
class Sample:
    """The fields of slime.utils.types.Sample the reward reads or writes (stand-in)."""

    prompt: str | list[dict[str, str]] = ""
    response: str = ""
    label: str | None = None
    index: int | None = None
    group_index: int | None = None
    reward: float | dict[str, Any] | None = None
    metadata: dict = dataclasses.field(default_factory=dict)


def slime_args(**settings: Any) -> SimpleNamespace:
    """slime's args after its --custom-config-path YAML set these keys as attributes."""
    return SimpleNamespace(custom_rm_path="ray_judge.integrations.slime.rm", group_rm=False,
                           **{f"ray_judge_{k}": v for k, v in settings.items()})


async def slime_batched(args: Any, samples: list[Sample]) -> list[float]:
    # slime's batched_async_rm without --group-rm: one rm call per sample, gathered.
    return await asyncio.gather(*(rj_slime.rm(args, s) for s in samples))


def test_slime_rm_and_group_rm(fresh) -> None:
    args = slime_args(failure_reward=0.0)
    samples = [Sample(prompt="What is 2+2?", response=r, label="4", index=i)
               for i, r in enumerate(["4", UNJUDGEABLE, "four"])]
    before = ray_calls()
    assert asyncio.run(slime_batched(args, samples)) == [0.8, 0.0, 0.8]
    assert ray_calls() - before < len(samples), "concurrent rm calls share Ray calls"
    assert [s.metadata["judge_status"] for s in samples] == ["ok", "parse_error", "ok"]

    before = ray_calls()
    assert asyncio.run(rj_slime.group_rm(args, samples)) == [0.8, 0.0, 0.8]
    assert ray_calls() - before == 1

    # --group-rm with ray_judge_group: the judge grades the group in one call.
    fresh.clear()
    before = ray_calls()
    grouped = slime_args(failure_reward=0.0, group=True)
    assert asyncio.run(rj_slime.group_rm(grouped, samples)) == [0.8, 0.8, 0.8]
    assert ray_calls() - before == 1
    (text,) = _judged_texts(fresh)
    assert text.count("<<<BEGIN RESPONSE ") == 3


def test_slime_settings_are_checked(judge) -> None:
    sample = Sample(prompt="q", response="a", metadata={"env": "x"})
    with pytest.raises(ValueError, match=r"ray_judge_failure_reward .* is required"):
        asyncio.run(rj_slime.rm(slime_args(), sample))
    with pytest.raises(ValueError, match=r"names \['dockerfile'\].*\['env'\]"):
        asyncio.run(rj_slime.rm(slime_args(failure_reward=0, fields=["dockerfile"]), sample))


# ------------------------------------------------------------------------ judge restarts


def test_adapters_survive_a_judge_restart(fresh, judge) -> None:
    """The judge actor is killed (and restarted by Ray) while a batch is in flight: every
    adapter call still gets its verdicts, none lost, none failed."""
    fresh.script(*[Behaviour.ok("Slow.\nSCORE: 8", delay_s=3.0)] * 6)
    args = slime_args(failure_reward=-9.0)
    samples = [Sample(prompt="What is 2+2?", response=str(i), label="4") for i in range(6)]

    async def kill_soon() -> None:
        await asyncio.sleep(1.0)
        ray.kill(ray.get_actor("judge", namespace="ray_judge"), no_restart=False)

    async def run() -> tuple[list[float], dict[str, Any]]:
        verl_call = rj_verl.compute_score("unit", "4", "4", {"question": "What is 2+2?"},
                                          failure_score=-9.0)
        rewards, _, verl_result = await asyncio.gather(
            rj_slime.group_rm(args, samples), kill_soon(), verl_call)
        return rewards, verl_result

    rewards, verl_result = asyncio.run(run())
    assert rewards == [0.8] * 6 and verl_result["score"] == 0.8
    assert judge_client()._started().snapshot()["resubmitted"] >= 1
