"""The main job, examples/score_rollouts.py, run as a user runs it: a real subprocess.

Every run starts and stops its own Ray in its own RAY_TMPDIR; the fixture checks that no
process of that Ray is left behind. The LiteLLM runs go over real HTTP to the fake
provider on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ray_cluster import RAY_TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "score_rollouts.py"
DATASET = ROOT / "examples" / "rollouts.jsonl"
MODEL = "litellm:openai/judge-model"

HAVE_FAKE_LLM = importlib.util.find_spec("ray_judge.testing.fake_llm") is not None
needs_fake_llm = pytest.mark.skipif(
    not HAVE_FAKE_LLM, reason="ray_judge.testing.fake_llm (the fake provider) is not there yet")

# What the caller's shell may hold that would choose or unlock a backend.
_BACKEND_ENV = ("LLM_JUDGE_", "CLAUDE_", "ANTHROPIC_", "OPENAI_", "HOSTED_VLLM_", "RAY_ADDRESS")


def _path_without_claude() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not shutil.which("claude", path=d))


def _processes_under(marker: str) -> list[int]:
    """Pids of processes whose command line mentions ``marker`` (our unique RAY_TMPDIR)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """An environment with no backend configured and a Ray of its own; checks its cleanup."""
    ray_tmp = tempfile.mkdtemp(prefix="rjx", dir="/tmp")  # AF_UNIX paths must stay short
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_BACKEND_ENV)}
    environ.update(RAY_TEST_ENV, RAY_TMPDIR=ray_tmp, PATH=_path_without_claude(),
                   LLM_JUDGE_NUM_WORKERS="1")  # one litellm import per run, not one per core
    yield environ
    deadline = time.monotonic() + 15
    while (left := _processes_under(ray_tmp + "/")) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:  # only processes of the Ray this test's run started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, f"the script left Ray processes running: {left}"


def run(args: list[str], environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=environ, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def words(text: str) -> str:
    """The text with its line wrapping undone, for matching sentences."""
    return " ".join(text.split())


def test_bundled_rollouts_are_well_formed():
    rows = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 300
    assert len({r["id"] for r in rows}) == 300
    assert {r["task"] for r in rows} == {"math", "code", "qa", "summarise", "instruction"}
    for r in rows:
        assert set(r) == {"id", "task", "prompt", "response", "reference"}
        assert isinstance(r["prompt"], str) and isinstance(r["response"], str)
        assert r["reference"] is None or isinstance(r["reference"], str)
    assert any(r["response"] == "" for r in rows)
    assert any("<<<END RESPONSE>>>" in r["response"] for r in rows)
    assert DATASET.stat().st_size < 400_000


# -- the script's parts, imported (no Ray) ------------------------------------------------


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("score_rollouts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _executable(path: Path) -> str:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("env", "override", "expected"),
    [
        ({}, None, ["ccode-4-sonnet (built-in default)", "`claude` is not found"]),
        ({"CLAUDE_CLI_PATH": "{tmp}/nowhere/claude"}, None, ["{tmp}/nowhere/claude"]),
        ({"CLAUDE_CLI_PATH": "{exe}"}, None, None),
        ({"LLM_JUDGE_NAME": "litellm:openai/gpt-4o"}, None,
         ["(environment variable LLM_JUDGE_NAME)", "OPENAI_API_KEY, OPENAI_API_BASE"]),
        ({"LLM_JUDGE_NAME": "litellm:openai/gpt-4o", "OPENAI_API_BASE": "http://127.0.0.1:9/v1"},
         None, None),
        ({"LLM_JUDGE_NAME": "litellm:anthropic/claude-3-opus-20240229"}, None,
         ["ANTHROPIC_API_KEY"]),
        ({"LLM_JUDGE_NAME": "litellm:hosted_vllm/qwen"}, None, ["HOSTED_VLLM_API_BASE"]),
        ({"LLM_JUDGE_NAME": "litellm:ollama/llama3"}, None, None),  # unknown: the judge says
        ({"CLAUDE_CLI_PATH": "{exe}"}, "litellm:anthropic/claude-3-opus-20240229",
         ["(override file", "ANTHROPIC_API_KEY"]),
    ],
)
def test_backend_problem(script, monkeypatch, tmp_path, env, override, expected):
    for name in list(os.environ):
        if name.startswith(_BACKEND_ENV):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", _path_without_claude())
    values = {"tmp": str(tmp_path), "exe": _executable(tmp_path / "claude")}
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**values))
    if override:
        (tmp_path / ".judge_backend").write_text(override + "\n")  # conftest: cwd is tmp_path

    problem = script.backend_problem(script.JudgeConfig.from_env())

    if expected is None:
        assert problem is None
    else:
        assert problem.startswith("No usable judge backend")
        assert problem.endswith("To try this script without any model, add --dry-run.")
        for part in expected:
            assert part.format(**values) in problem


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"prompt": "p", "response": "r"}\nnot json\n', "line 2 is not JSON"),
        ('["p", "r"]\n', "line 1 must be a JSON object, got list"),
        ('{"prompt": "p"}\n', "line 1: 'response' must be a string, got NoneType"),
        ('{"prompt": "p", "response": "r", "reference": 4}\n', "'reference' must be a string"),
        ("\n\n", "holds no rollouts"),
    ],
)
def test_bad_rollout_files_are_refused_with_the_line(script, tmp_path, capsys, content, error):
    path = tmp_path / "rollouts.jsonl"
    path.write_text(content)

    with pytest.raises(script.typer.Exit) as exit_info:
        script.load_rollouts(path, None)

    assert exit_info.value.exit_code == 2
    assert error in words(capsys.readouterr().err)


def test_summary_averages_ok_verdicts_only_and_lists_failures(script, tmp_path, capsys):
    from ray_judge import Verdict

    ok = {"status": "ok", "backend": MODEL, "latency_s": 1.0, "cost_usd": 0.001,
          "input_tokens": 100, "output_tokens": 20}
    verdicts = [
        Verdict(score=0.9, **ok),
        Verdict.failure("timeout", "no answer within 120.0s", backend=MODEL, latency_s=120.0),
        Verdict(score=0.5, **ok),
        Verdict.failure("parse_error", "no SCORE line in the judge's answer", backend=MODEL),
        Verdict.failure("timeout", "a later timeout", backend="ccode-4-sonnet", latency_s=90.0),
    ]
    rollouts = [{"id": f"r{i}", "task": "math" if i < 3 else "qa"} for i in range(5)]

    summary = script.summarise(rollouts, verdicts, wall_s=2.0, total=5)
    script.print_summary(summary, "title", startup_s=5.0)
    script.write_json(tmp_path / "out.json", rollouts, verdicts, summary)

    assert summary["mean_score"] == pytest.approx(0.7)  # (0.9 + 0.5) / 2, not / 5
    assert (summary["ok"], summary["failed"], summary["stopped_early"]) == (2, 3, False)
    assert summary["by_status"] == {"timeout": 2, "ok": 2, "parse_error": 1}
    assert summary["by_backend"] == {MODEL: 4, "ccode-4-sonnet": 1}
    assert summary["by_task"]["qa"] == {"items": 2, "ok": 0, "mean_score": None}
    assert summary["first_errors"]["timeout"] == {"id": "r1", "error": "no answer within 120.0s"}
    assert summary["latency_s"]["max"] == 120.0
    assert summary["cost_usd"] == pytest.approx(0.002)
    assert (summary["input_tokens"], summary["verdicts_per_s"]) == (200, 2.5)
    out = capsys.readouterr().out
    assert "0.700  over 2 ok" in out
    failures = out.split("failures", 1)[1]
    assert "timeout" in failures and "first: r1: no answer within 120.0s" in failures
    assert "parse_error" in failures
    assert "qa                  n/a  over 0/2 ok" in out
    saved = json.loads((tmp_path / "out.json").read_text())["verdicts"]
    assert [v["score"] for v in saved] == [0.9, None, 0.5, None, None]


def test_progress_off_a_terminal_prints_a_line_per_tenth(script, capsys):
    progress = script.Progress(200)
    for _ in range(50):
        progress.advance(4)
    progress.close()

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("scored 20/200 (10%)")
    assert lines[-1].startswith("scored 200/200 (100%)")
    assert "\r" not in "".join(lines)


# -- the script as a user runs it ----------------------------------------------------------


def test_readme_first_command_is_the_dry_run_and_the_real_run_is_under_it():
    """On a fresh machine with no credentials the README's first command must run the
    main job end to end: with the built-in fake model, said in its comment; the line
    right under it is the real judged run."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    first = next(i for i, line in enumerate(block) if not line.startswith("#"))
    assert block[first].endswith("./launch.sh python examples/score_rollouts.py --dry-run")
    assert "fake model" in " ".join(block[:first])
    real = next(line for line in block[first + 1:] if not line.startswith("#"))
    assert real.endswith("./launch.sh python examples/score_rollouts.py")
    assert "CLAUDE_CLI_PATH" in real


def test_no_usable_backend_stops_before_starting_anything(env, tmp_path):
    result = run([], env, tmp_path)

    assert result.returncode == 2, result.stderr
    message = words(result.stderr)
    assert message.startswith("No usable judge backend: the judge would use ccode-4-sonnet")
    for advice in ("CLAUDE_CLI_PATH", "ANTHROPIC_API_KEY",
                   "python switch_judge_backend.py litellm MODEL", "--dry-run"):
        assert advice in message
    assert "\n\n" not in result.stderr.strip()  # one paragraph
    assert result.stdout == ""
    assert not (Path(env["RAY_TMPDIR"]) / "ray").exists()  # Ray was never started


@pytest.mark.ray
@pytest.mark.slow
def test_dry_run_scores_without_a_model(env, tmp_path):
    out = tmp_path / "verdicts.json"
    result = run(["--dry-run", "--limit", "40", "--batch-size", "8", "--json", str(out)],
                 env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Scored 40 of 40 rollouts" in result.stdout
    assert "dry run: the built-in fake model" in result.stdout
    # ... and the one change that makes it a real judged run.
    assert "drop --dry-run" in words(result.stdout)
    assert "export CLAUDE_CLI_PATH=$(which claude)" in words(result.stdout)
    for row in ("items", "mean score (ok only)", "by status", "by backend",
                "latency p50/p95/max", "cost", "tokens in/out", "wall time"):
        assert row in result.stdout
    assert "scored 40/40 (100%)" in result.stderr  # progress, one line per step off a TTY
    data = json.loads(out.read_text())
    verdicts, summary = data["verdicts"], data["summary"]
    assert len(verdicts) == summary["items"] == 40
    assert summary["by_status"] == {"ok": 40}
    for v in verdicts:  # a score exists exactly when the verdict is ok: no 0.0 stand-ins
        assert (v["score"] is not None) == (v["status"] == "ok")
    scores = [v["score"] for v in verdicts if v["status"] == "ok"]
    assert summary["mean_score"] == pytest.approx(sum(scores) / len(scores))


@pytest.fixture
def fake_llm(env) -> Iterator[object]:
    from ray_judge.testing import FakeLLMProcess

    with FakeLLMProcess(env=env) as fake:
        env.update(LLM_JUDGE_NAME=MODEL, OPENAI_API_BASE=f"{fake.url}/v1",
                   OPENAI_API_KEY="sk-test")
        yield fake


@needs_fake_llm
@pytest.mark.ray
@pytest.mark.slow
def test_litellm_over_http_all_ok(env, fake_llm, tmp_path):
    out = tmp_path / "verdicts.json"
    result = run(["--limit", "30", "--batch-size", "8", "--json", str(out)], env, tmp_path)

    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["by_status"] == {"ok": 30}
    assert summary["by_backend"] == {MODEL: 30}
    assert summary["mean_score"] == pytest.approx(0.8)  # the fake's default "SCORE: 8"
    assert f"{MODEL} 30" in result.stdout
    assert fake_llm.model_calls() == 30


@needs_fake_llm
@pytest.mark.ray
@pytest.mark.slow
def test_first_batch_all_failed_stops_early_with_a_hint(env, fake_llm, tmp_path):
    from ray_judge.testing import Behaviour

    fake_llm.set_default(Behaviour.error(401, "invalid x-api-key"))
    result = run(["--limit", "30", "--batch-size", "8"], env, tmp_path)

    assert result.returncode == 1, result.stderr
    message = words(result.stderr)
    assert "Stopped after the first batch: all 8 verdicts failed (auth_error" in message
    assert "check the API key" in message
    assert "Scored 8 of 30 rollouts" in result.stdout
    assert "n/a" in result.stdout  # no mean at all, rather than 0.0
    assert fake_llm.model_calls() <= 8  # the rest of the set was never sent
