"""Labelled cases judged on several backends through a real :class:`JudgeCore` (fake
backend, workers in this process, no Ray), and ``ray-judge eval``'s refusals, which all
come before anything is judged."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from ray_judge.cli import app
from ray_judge.errors import TransientBackendError
from ray_judge.quality.cases import parse_cases
from ray_judge.quality.metrics import METRICS, summarize
from ray_judge.quality.run import judge_cases

from .test_judge_core import make_core, run

A, B = "litellm:fake/a", "litellm:fake/b"
LINES = [
    {"prompt": "2+2?", "response": "4", "label": 8},
    {"prompt": "2+2?", "response": "5", "range": [0, 3]},
    {"prompt": "2+2?", "response": "four", "pass": True},
    {"prompt": "2+2?", "a": "4", "b": "5", "preferred": "a"},
    {"prompt": "2+2?", "responses": ["4", "5", "22"], "ranking": [0, 2, 1]},
]


def test_every_backend_judges_every_case_and_each_sample_is_its_own_call(tmp_path):
    async def scenario():
        core = make_core(tmp_path)
        cases = parse_cases([json.dumps(x) for x in LINES], core.judges_catalog)
        results = await judge_cases(core, cases, [A, B], samples=2)
        await core.aclose()
        return results

    results = run(scenario)
    assert list(results) == [A, B]
    for spec, judged in results.items():
        assert [j.case.line for j in judged] == [1, 2, 3, 4, 5]
        for j in judged:
            assert len(j.samples) == 2
            for sample in j.samples:
                verdicts = sample if isinstance(sample, (list, tuple)) else [sample]
                assert all(v.ok and v.backend == spec and not v.cached for v in verdicts)
        figures = summarize(judged)
        assert tuple(figures) == METRICS and figures["cases"] == 5 and figures["ok"] == 1.0
        for name in ("mae", "spearman", "in_range", "accuracy", "kappa", "tpr",
                     "position_consistency", "self_consistency"):
            assert name in figures
        # the fake answers the same text the same way: its samples do not spread
        assert figures["self_consistency"] == 0.0


def test_a_backend_that_fails_gives_failed_cases_never_scores(tmp_path):
    async def scenario():
        core = make_core(tmp_path)

        def broken(prompt):
            raise TransientBackendError("provider down", backend=B)

        for worker in core.workers.workers:
            worker._runner(B).backend.handler = broken
        cases = parse_cases([json.dumps(x) for x in LINES], core.judges_catalog)
        results = await judge_cases(core, cases, [A, B])
        await core.aclose()
        return results

    results = run(scenario)
    failed = summarize(results[B])
    assert failed["ok"] == 0.0
    assert all(failed[m] is None for m in ("mae", "spearman", "in_range", "accuracy",
                                           "kendall_tau"))
    assert all(j.got is None and j.error == float("inf") for j in results[B])
    assert summarize(results[A])["ok"] == 1.0


runner = CliRunner()


@pytest.fixture
def no_cluster(tmp_path, monkeypatch):
    """No Ray cluster to find: a judge must not be reached by any test here."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))
    monkeypatch.setenv("LLM_JUDGE_BACKEND_FILE", str(tmp_path / ".judge_backend"))


def _eval(*args: str):
    return runner.invoke(app, ["eval", *args])


def test_a_bad_cases_file_is_refused_with_its_lines_and_nothing_is_judged(tmp_path,
                                                                          no_cluster):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"prompt": "p", "response": "r", "pass": true}\n'
                    '{"prompt": "p", "response": "r", "range": [7, 2]}\n'
                    '{"prompt": "p", "response": 5, "label": 3}\n', encoding="utf-8")
    result = _eval(str(path))
    assert result.exit_code == 1
    assert f"error: {path}: 2 problem(s), nothing was judged:" in result.stderr
    assert "  line 2: range must be [low, high] with low <= high, got [7, 2]" in result.stderr
    assert "  line 3: response must be a string or a list of messages" in result.stderr
    assert "Judging" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--min", "accuracyy=0.9"], "error: --min: unknown metric 'accuracyy' in 'accuracyy=0.9'; "
                                 "known: cases, ok, parse_failures, mae, spearman"),
    (["--min", "spearman"], "error: --min: a bound is METRIC=VALUE, e.g. spearman=0.6, got "
                            "'spearman'"),
    (["--min", "mae>=1"], "error: --min: 'mae>=1': mae is bounded from above (write mae<=1)"),
    (["--backend", "gpt-4o"], "error: --backend: invalid judge backend 'gpt-4o': unknown backend "
                              "prefix"),
])
def test_bad_options_are_refused_before_anything_is_judged(tmp_path, no_cluster, args,
                                                           message):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"prompt": "p", "response": "r", "pass": true}\n', encoding="utf-8")
    result = _eval(str(path), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr
    assert "Judging" not in result.output


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, no_cluster, monkeypatch):
    """matplotlib is installed here (the test extra): it is hidden, as on a machine
    without the ``plot`` extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "cases.jsonl"
    path.write_text('{"prompt": "p", "response": "r", "pass": true}\n', encoding="utf-8")
    result = _eval(str(path), "--plot", str(tmp_path / "out.png"))
    assert result.exit_code == 1
    assert "error: --plot needs matplotlib: pip install 'ray_judge[plot]'" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_a_large_file_goes_in_chunks_a_few_calls_at_a_time_in_order(tmp_path, monkeypatch):
    from ray_judge.quality import run as run_module

    monkeypatch.setattr(run_module, "CHUNK", 2)
    monkeypatch.setattr(run_module, "MAX_CALLS", 1)
    lines = [json.dumps({"prompt": "q", "response": f"r{i}", "label": 5, "metadata": i})
             for i in range(7)]

    async def scenario():
        core = make_core(tmp_path)
        sizes = []
        score_batch = core.score_batch

        async def counted(items):
            sizes.append((len(items), core.dispatcher.queued))
            return await score_batch(items)

        core.score_batch = counted
        cases = parse_cases(lines, core.judges_catalog)
        results = await judge_cases(core, cases, [A])
        await core.aclose()
        return sizes, results

    sizes, results = run(scenario)
    assert [n for n, _ in sizes] == [2, 2, 2, 1]
    assert all(queued == 0 for _, queued in sizes)  # one call at a time
    assert [j.samples[0].metadata for j in results[A]] == list(range(7))
