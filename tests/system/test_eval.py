"""``ray-judge eval`` end to end: a real process, a real Ray cluster with the judge actor,
real LiteLLM calls over HTTP to the fake provider on 127.0.0.1.

The provider answers two known score functions by model: ``openai/faithful`` gives every
case its labelled score, ``openai/shifted`` a table of scores that are shifted and
noisy. Every figure the command reports is computed here again from the same tables
with independent formulas (numpy, or the definition written out), and the gate, the
JSON, the PNG and a bad cases file are checked as a person or a CI job meets them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge.testing import FakeLLMServer  # noqa: E402

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
FAITHFUL, SHIFTED = "litellm:openai/faithful", "litellm:openai/shifted"

#: response -> (label, the shifted model's score), on the default judge's 0-10 scale
LABELS = {"answer-L1": (1, 3), "answer-L2": (3, 6), "answer-L3": (4, 5), "answer-L4": (6, 8),
          "answer-L5": (7, 10)}
#: response -> ((low, high), the faithful model's score, the shifted model's score)
RANGES = {"answer-R1": ((0, 2), 1, 3), "answer-R2": ((3, 5), 4, 4),
          "answer-R3": ((6, 8), 7, 9), "answer-R4": ((8, 10), 9, 10)}
#: response -> (pass?, the faithful model's score, the shifted model's score)
PASSES = {"answer-P1": (True, 9, 9), "answer-P2": (True, 8, 4), "answer-P3": (False, 1, 7),
          "answer-P4": (False, 2, 1)}


def score_of(model: str, response: str) -> int:
    faithful = model.endswith("faithful")
    if response in LABELS:
        label, shifted = LABELS[response]
        return label if faithful else shifted
    if response in RANGES:
        return RANGES[response][1 if faithful else 2]
    return PASSES[response][1 if faithful else 2]


_BLOCKS = re.compile(r"<<<BEGIN RESPONSE (\w+)>>>\n(.*?)\n<<<END RESPONSE \1>>>", re.S)


def reply(body: dict) -> str:
    user = body["messages"][-1]["content"]
    text = user if isinstance(user, str) else user[0]["text"]
    model = body["model"]
    blocks = dict(_BLOCKS.findall(text))
    if set(blocks) == {"A", "B"}:  # compare's pairwise judge, in either order
        a, b = score_of(model, blocks["A"]), score_of(model, blocks["B"])
        return f'Compared.\n{{"preference": {5 + (a - b) / 2:g}}}'
    if blocks:  # a group: RESPONSE 1..k, shown shuffled
        scores = [score_of(model, blocks[str(i)]) for i in range(1, len(blocks) + 1)]
        return "Graded.\n" + json.dumps({"scores": scores})
    response = text.split("<<<BEGIN RESPONSE>>>\n", 1)[1].split("\n<<<END RESPONSE>>>")[0]
    return f"Graded.\nSCORE: {score_of(model, response)}"


def cases_lines() -> list[str]:
    lines = [{"id": r, "prompt": "Answer.", "response": r, "label": label}
             for r, (label, _) in LABELS.items()]
    lines += [{"id": r, "prompt": "Answer.", "response": r, "range": list(rng)}
              for r, (rng, _, _) in RANGES.items()]
    lines += [{"id": r, "prompt": "Answer.", "response": r, "pass": ok}
              for r, (ok, _, _) in PASSES.items()]
    return [json.dumps(x) for x in lines]


def average_ranks(xs: list[float]) -> list[float]:
    """The rank definition written out: 1 + how many are smaller + half the ties."""
    return [1 + sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]


def expected_figures(model: str) -> dict[str, float]:
    """Every figure the command must print for ``model``, computed independently."""
    got_l = [score_of(model, r) for r in LABELS]
    exp_l = [label for label, _ in LABELS.values()]
    got_r = [score_of(model, r) for r in RANGES]
    rng = [r for r, _, _ in RANGES.values()]
    expected = exp_l + [(lo + hi) / 2 for lo, hi in rng]
    got = got_l + got_r
    outside = [max(lo - g, 0, g - hi) for g, (lo, hi) in zip(got_r, rng, strict=True)]
    truth = [ok for ok, _, _ in PASSES.values()]
    said = [score_of(model, r) >= 5 for r in PASSES]  # the middle of 0-10
    agree = np.mean([t == s for t, s in zip(truth, said, strict=True)])
    chance = np.mean(truth) * np.mean(said) + (1 - np.mean(truth)) * (1 - np.mean(said))
    return {
        "mae": float(np.mean(np.abs(np.array(got_l) - np.array(exp_l)))),
        "pearson": float(np.corrcoef(expected, got)[0, 1]),
        "spearman": float(np.corrcoef(average_ranks(expected), average_ranks(got))[0, 1]),
        "in_range": float(np.mean([d == 0 for d in outside])),
        "outside_distance": float(np.mean(outside)),
        "accuracy": float(agree),
        "kappa": float((agree - chance) / (1 - chance)),
        "tpr": float(np.mean([s for t, s in zip(truth, said, strict=True) if t])),
        "tnr": float(np.mean([not s for t, s in zip(truth, said, strict=True) if not t])),
    }


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    init_local()
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(reply=reply) as fake:
        yield fake


@pytest.fixture(scope="module")
def provider_env(server, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("eval")
    return {"LLM_JUDGE_NAME": FAITHFUL, "LLM_JUDGE_BACKEND_FILE": str(home / ".judge_backend"),
            "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_RESERVOIR_SIZE": "0",
            "OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-test-eval",
            "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@pytest.fixture(scope="module")
def judge(cluster, provider_env):
    handle = ray_judge.start_judge(env=provider_env)
    yield handle
    ray_judge.stop_judge()


@pytest.fixture(scope="module")
def cases_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cases") / "cases.jsonl"
    path.write_text("\n".join(cases_lines()) + "\n", encoding="utf-8")
    return path


def eval_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("LLM_JUDGE_", "OPENAI_", "RAY_ADDRESS"))}
    environ.update(env, PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "ray_judge.cli", "eval", *args], env=environ,
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


# -------------------------------------------------------------------------------- tests


def test_two_backends_side_by_side_through_the_running_judge(judge, cluster, provider_env,
                                                             cases_file, server, tmp_path):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    server.clear()
    done = eval_cli(str(cases_file), "--backend", FAITHFUL, "--backend", SHIFTED,
                    "--json", str(out_json), "--plot", str(out_png),
                    "--min", "spearman=0.95", "--min", "in_range=0.8", "--min", "mae=1",
                    env={**provider_env, "RAY_ADDRESS": cluster}, cwd=tmp_path)
    assert "with the running judge 'judge'" in done.stderr, done.stderr
    # The gate: the shifted backend misses all three bounds, the faithful one none.
    assert done.returncode == 1, done.stderr
    shifted = expected_figures(SHIFTED)
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED --min")]
    assert failed == [
        f"FAILED --min: {SHIFTED}: spearman {shifted['spearman']:.4g} < 0.95, short by "
        f"{0.95 - shifted['spearman']:.4g}",
        f"FAILED --min: {SHIFTED}: in_range 0.5 < 0.8, short by 0.3",
        f"FAILED --min: {SHIFTED}: mae 2.2 > 1, over by 1.2",
    ]
    # The table names both backends side by side, and the worst cases of the shifted one.
    header = next(line for line in done.stdout.splitlines() if "metric" in line)
    assert header.index(FAITHFUL) < header.index(SHIFTED)
    assert f"Every case right on {FAITHFUL}." in done.stdout
    assert f"Worst cases on {SHIFTED}:" in done.stdout
    assert "line 5 (answer-L5): expected 7, got 10" in done.stdout
    # The JSON holds every figure, as computed independently here.
    report = json.loads(out_json.read_text())
    assert set(report["backends"]) == {FAITHFUL, SHIFTED}
    for spec in (FAITHFUL, SHIFTED):
        figures = report["backends"][spec]
        assert figures["cases"] == 13 and figures["ok"] == 1.0
        assert figures["parse_failures"] == 0 and figures["tokens"] > 0
        for name, value in expected_figures(spec).items():
            assert figures[name] == pytest.approx(value, abs=1e-6), (spec, name)
        for name in ("position_consistency", "kendall_tau", "self_consistency"):
            assert figures[name] is None  # no comparisons, groups or samples here
        assert 0 < figures["latency_p50_s"] <= figures["latency_p95_s"]
    assert expected_figures(FAITHFUL)["spearman"] == pytest.approx(1.0)
    assert len(report["cases"]) == 13
    first = report["cases"][0]
    assert first["expected"] == 1 and first["backends"][SHIFTED]["got"] == 3.0
    assert first["backends"][SHIFTED]["verdicts"][0]["backend"] == SHIFTED
    # The PNG is a PNG (looked at by eye when this test was written: docs/eval.png).
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each request reached the provider with the model its backend names: 13 cases each.
    models = [(r.body or {}).get("model") for r in server.requests
              if r.path.endswith("/chat/completions")]
    assert sorted(set(models)) == ["faithful", "shifted"]
    assert models.count("shifted") == 13
    # The running judge still serves its own backend: the eval pinned its requests.
    assert ray.get(judge.status.remote())["serving"] == FAITHFUL


def test_the_default_backend_is_the_one_the_judge_serves_and_samples_are_calls(
        judge, cluster, provider_env, cases_file, server, tmp_path):
    server.clear()
    done = eval_cli(str(cases_file), "--samples", "3", "--json", str(tmp_path / "e.json"),
                    "--min", "in_range=1", env={**provider_env, "RAY_ADDRESS": cluster},
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"on {FAITHFUL} with the running judge" in done.stderr
    assert "Every backend meets in_range>=1." in done.stdout
    figures = json.loads((tmp_path / "e.json").read_text())["backends"][FAITHFUL]
    assert figures["self_consistency"] == 0.0  # the faithful model never wavers
    # Samples 1 and 2 were judged again (sample 0 was in the cache from the test above).
    calls = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert len(calls) == 13 * 2


def test_a_bad_cases_file_is_refused_whole_and_nothing_is_judged(judge, cluster,
                                                                 provider_env, server,
                                                                 tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = cases_lines()
    lines[3] = '{"prompt": "Answer.", "response": "x", "range": [9, 2]}'
    lines[7] = '{"prompt": "Answer.", "response": "x", "pass": "yes"}'
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    calls = server.model_calls
    done = eval_cli(str(bad), "--backend", SHIFTED, env={**provider_env, "RAY_ADDRESS": cluster},
                    cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {bad}: 2 problem(s), nothing was judged:",
        "  line 4: range must be [low, high] with low <= high, got [9, 2]",
        "  line 8: pass must be true or false, got 'yes'",
    ]
    assert done.stdout == "" and server.model_calls == calls


def test_comparisons_and_groups_through_the_running_judge(judge, cluster, provider_env,
                                                          tmp_path):
    path = tmp_path / "pairs.jsonl"
    # faithful scores: L5 7, L4 6, L3 4, L2 3, L1 1; shifted: L5 10, L4 8, L3 5, L2 6, L1 3
    path.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "Answer.", "a": "answer-L5", "b": "answer-L1", "preferred": "a"},
        {"prompt": "Answer.", "a": "answer-L2", "b": "answer-L4", "preferred": "b"},
        {"prompt": "Answer.", "responses": ["answer-L5", "answer-L3", "answer-L2",
                                            "answer-L1"], "ranking": [0, 1, 2, 3]},
    ]) + "\n", encoding="utf-8")
    done = eval_cli(str(path), "--backend", FAITHFUL, "--backend", SHIFTED,
                    "--json", str(tmp_path / "p.json"),
                    env={**provider_env, "RAY_ADDRESS": cluster}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    backends = json.loads((tmp_path / "p.json").read_text())["backends"]
    faithful, shifted = backends[FAITHFUL], backends[SHIFTED]
    assert faithful["accuracy"] == 1.0 and faithful["kendall_tau"] == 1.0
    # shifted: L2 (6) against L4 (8) is a preference of 5 - 1 = 4 of 10, within 0.1 of
    # a tie; the group reads 10, 5, 6, 3: one of six pairs discordant, tau = (5 - 1) / 6
    assert shifted["accuracy"] == 0.5
    assert shifted["kendall_tau"] == pytest.approx(4 / 6)
    # both orders of every comparison agree: each answer is scored from its own text
    assert faithful["position_consistency"] == shifted["position_consistency"] == 1.0


def test_without_a_running_judge_it_judges_in_its_own_process(provider_env, cases_file,
                                                              server, tmp_path):
    done = eval_cli(str(cases_file), "--backend", SHIFTED, "--json", str(tmp_path / "e.json"),
                    env={**provider_env, "RAY_TMPDIR": str(tmp_path / "no-ray")},
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No running judge (no Ray cluster here): judging in this process." in done.stderr
    figures = json.loads((tmp_path / "e.json").read_text())["backends"][SHIFTED]
    for name, value in expected_figures(SHIFTED).items():
        assert figures[name] == pytest.approx(value, abs=1e-6), name


def test_a_client_request_names_its_backend_through_the_real_pool(judge):
    client = ray_judge.JudgeClient()
    try:
        pinned = client.score("Answer.", "answer-L2", backend=SHIFTED)
        served = client.score("Answer.", "answer-L2")
        batch = client.score_batch([{"prompt": "Answer.", "response": "answer-L3",
                                     "backend": SHIFTED},
                                    {"prompt": "Answer.", "response": "answer-L3"}])
        with pytest.raises(ValueError, match=r"^request\.backend: invalid judge backend 'gpt-4o'"):
            client.score("Answer.", "answer-L2", backend="gpt-4o")
    finally:
        client.close()
    assert (pinned.backend, pinned.score) == (SHIFTED, 0.6)
    assert (served.backend, served.score) == (FAITHFUL, 0.3)
    assert [(v.backend, v.score) for v in batch] == [(SHIFTED, 0.5), (FAITHFUL, 0.4)]
    pair = ray.get(judge.compare.remote("Answer.", "answer-L1", "answer-L2", backend=SHIFTED),
                   timeout=120)
    assert pair.ok and pair.backend == SHIFTED
