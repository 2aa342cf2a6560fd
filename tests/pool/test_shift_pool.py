"""Switch-aware rewards through the real pool: the LiteLLM backend in real worker actors,
real HTTP to two fake providers on 127.0.0.1 that score the same requests by two known
functions (the Anthropic one is the old backend, the OpenAI one the new: +0.30 and a
little noise, clipped at 1).

* a switch under load: the reservoir is re-judged on the new backend in the background,
  the report's mean shift and Spearman match the two functions, and training calls are
  not slower while it runs than after it is done;
* calibration: the new backend's calibrated scores follow the old one's distribution on
  held-out requests (two-sample KS), monotone in the raw score, within [0, 1];
* a usage-limit failover: the reservoir is re-judged on the fallback, and not one of its
  requests reaches the old provider again; with too few pairs verdicts stay raw;
* a restarted judge keeps its reservoir in the cache file;
* the shift plot renders the measured pairs as a PNG.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests import waiting

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec  # noqa: E402
from ray_judge.selection.override_file import write_override  # noqa: E402
from ray_judge.shift.stats import spearman  # noqa: E402
from ray_judge.testing import FakeLLMServer  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: The switch test's judge: a judge definition asking for calibration (the failover test
#: uses the default judge and LLM_JUDGE_CALIBRATE).
JUDGE = "graded"
RESERVOIR = 120
FILL = range(0, 200)
OLD = "litellm:anthropic/claude-3-haiku-20240307"
NEW = "litellm:openai/judge-new"
LATENCY_S = 0.03
WAIT_S = 120.0
ANSWER = re.compile(r"answer-(\d{6})")


def old_score(i: int) -> int:
    """The old backend's score of request i, out of 100: spread over 0..70."""
    return (i * 37) % 71


def new_score(i: int) -> int:
    """The new backend's: 30 higher, give or take 6, clipped to 0..100."""
    return max(0, min(100, old_score(i) + 30 + (i * 7) % 13 - 6))


def reply_with(score) -> Any:
    def reply(body: dict[str, Any]) -> str:
        ids = ANSWER.findall(json.dumps(body))
        return f"Judged.\nSCORE: {score(int(ids[-1]))}" if ids else "SCORE: 50"
    return reply


def answer(i: int) -> str:
    return f"The answer is answer-{i:06d}."


def items(ids, judge: str | None = None) -> list[dict[str, Any]]:
    return [{"prompt": "Solve the task.", "response": answer(i), "metadata": i, "judge": judge}
            for i in ids]


wait_for = functools.partial(waiting.wait_for, timeout=WAIT_S, every=0.1)


def ids_seen(server: FakeLLMServer) -> list[int]:
    return [int(i) for r in server.requests for i in ANSWER.findall(json.dumps(r.body or {}))]


def ks_statistic(a: list[float], b: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap of the empirical CDFs."""
    a, b = sorted(a), sorted(b)
    gap = 0.0
    for x in sorted(set(a) | set(b)):
        fa = sum(1 for v in a if v <= x) / len(a)
        fb = sum(1 for v in b if v <= x) / len(b)
        gap = max(gap, abs(fa - fb))
    return gap


class Trainer(threading.Thread):
    """Training traffic: ``callers`` single score calls in a loop, each call's latency
    recorded with the phase it started in."""

    def __init__(self, judge: Any, *, callers: int = 6, first_id: int = 100_000) -> None:
        super().__init__(daemon=True)
        self.judge, self.callers, self.next_id = judge, callers, first_id
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {}
        self.verdicts: list[Any] = []
        self._halt = threading.Event()
        self.crashed: BaseException | None = None

    def run(self) -> None:
        try:
            pending: dict[Any, tuple[str, float]] = {}
            while not self._halt.is_set() or pending:
                while not self._halt.is_set() and len(pending) < self.callers:
                    ref = self.judge.score.remote("Solve the task.", answer(self.next_id),
                                                  metadata=self.next_id, judge=JUDGE)
                    self.next_id += 1
                    pending[ref] = (self.phase, time.monotonic())
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    phase, started = pending.pop(ref)
                    self.verdicts.append(ray.get(ref))
                    self.latencies.setdefault(phase, []).append(time.monotonic() - started)
        except BaseException as exc:
            self.crashed = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(WAIT_S)
        assert self.crashed is None, repr(self.crashed)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def providers():
    with FakeLLMServer(latency_s=LATENCY_S, reply=reply_with(old_score)) as old, \
            FakeLLMServer(latency_s=LATENCY_S, reply=reply_with(new_score)) as new:
        yield old, new


def judge_env(providers, backend_file: Path, **extra: str) -> dict[str, str]:
    old, new = providers
    return {
        "LLM_JUDGE_NAME": OLD,
        "LLM_JUDGE_BACKEND_FILE": str(backend_file),
        "LLM_JUDGE_BACKEND_TTL": "600",  # only refresh_backend switches
        "LLM_JUDGE_SCORE_MAX": "100",
        "LLM_JUDGE_NUM_WORKERS": "1",
        "LLM_JUDGE_MAX_ATTEMPTS": "1",
        "LLM_JUDGE_HEDGE": "off",  # provider calls are counted: no hedged calls
        "LLM_JUDGE_CANARY_SHARE": "0",  # ...and no canaries
        "ANTHROPIC_API_BASE": old.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-old",
        "OPENAI_API_BASE": f"{new.url}/v1",
        "OPENAI_API_KEY": "sk-test-new",
        "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        **extra,
    }


def status(judge: Any) -> dict[str, Any]:
    return ray.get(judge.status.remote(), timeout=30)


def fill(judge: Any, ids: range, name: str | None = None) -> None:
    for start in range(ids.start, ids.stop, 100):
        chunk = range(start, min(start + 100, ids.stop))
        verdicts = ray.get(judge.score_batch.remote(items(chunk, name)), timeout=WAIT_S)
        assert all(v.ok for v in verdicts), [v for v in verdicts if not v.ok][:1]


@pytest.fixture(scope="module")
def switched(cluster, providers, tmp_path_factory):
    """A judge with calibration on, filled on the old backend, switched to the new one
    under training load; yields once the re-judging is done."""
    tmp = tmp_path_factory.mktemp("switch")
    path = tmp / ".judge_backend"
    (tmp / "judges.toml").write_text(f'[judges.{JUDGE}]\ncalibrate = "quantile"\n')
    env = judge_env(providers, path, LLM_JUDGE_NUM_WORKERS="2",
                    LLM_JUDGE_RESERVOIR_SIZE=str(RESERVOIR),
                    LLM_JUDGE_JUDGES_FILE=str(tmp / "judges.toml"),
                    LLM_JUDGE_CALIBRATION_MIN_PAIRS="100",
                    LLM_JUDGE_CACHE_PATH=str(tmp / "cache.sqlite"),
                    # 4 background calls at a time, so the re-judging lasts a while
                    LLM_JUDGE_MAX_IN_FLIGHT_LITELLM="20", LLM_JUDGE_SHIFT_SHARE="0.2")
    judge = ray_judge.start_judge(name="judge_switch", env=env)
    fill(judge, FILL, JUDGE)
    assert status(judge)["reservoir"][JUDGE]["entries"] == RESERVOIR
    trainer = Trainer(judge)
    trainer.start()
    try:
        wait_for(lambda: len(trainer.latencies.get("before", [])) >= 30, "load on old")
        write_override(path, BackendSpec.parse(NEW))
        assert ray.get(judge.refresh_backend.remote(), timeout=30)["backend"] == NEW
        trainer.phase = "during"
        report = wait_for(lambda: status(judge)["shift"].get(JUDGE, {}).get("done")
                          and status(judge)["shift"][JUDGE], "the re-judging")
        trainer.phase = "after"
        n_during = len(trainer.latencies.get("during", []))
        wait_for(lambda: len(trainer.latencies.get("after", [])) >= max(30, n_during),
                 "load after the re-judging")
    finally:
        trainer.stop()
    yield judge, report, trainer, env
    ray_judge.stop_judge(name="judge_switch")


# -------------------------------------------------------------------------------- tests


def test_a_switch_under_load_measures_the_shift(switched, providers) -> None:
    _, report, trainer, _ = switched
    assert (report["old"], report["new"]) == (OLD, NEW)
    assert report["n"] == report["judged"] == report["todo"] == RESERVOIR
    assert report["failed"] == 0
    population = FILL
    diffs = [(new_score(i) - old_score(i)) / 100 for i in population]
    rho = spearman([old_score(i) for i in population], [new_score(i) for i in population])
    assert report["mean"] == pytest.approx(statistics.fmean(diffs), abs=0.03)
    assert report["spearman"] == pytest.approx(rho, abs=0.05)
    assert report["line"].startswith(f"since {time.strftime('%H:%M')[:2]}")
    # The numbers are checked above; the line shows them rounded (+0.29 or +0.30 here).
    assert re.search(rf"{re.escape(NEW)} vs {re.escape(OLD)} on {RESERVOIR} pairs: "
                     rf"mean \+0\.[23]\d, Spearman 0\.9\d", report["line"]), report["line"]
    # Training traffic went on throughout, served by the new backend after the switch.
    assert all(v.ok for v in trainer.verdicts)
    # Every reservoir request was re-judged on the new provider exactly once.
    _, new = providers
    # (The reservoir holds the fill and some training calls the old backend served.)
    old_served = {*FILL, *(v.metadata for v in trainer.verdicts if v.backend == OLD)}
    rejudged = [i for i in ids_seen(new) if i in old_served]
    assert len(rejudged) == len(set(rejudged)) == RESERVOIR


def test_training_calls_are_not_delayed_by_the_re_judging(switched) -> None:
    _, _, trainer, _ = switched
    during, after = trainer.latencies["during"], trainer.latencies["after"]
    assert len(during) >= 10, len(during)  # the re-judging overlapped real traffic
    # Same backend, same load, with and without the background work: medians within
    # 50% + 20 ms (a loaded 2-core machine; a delayed call would wait whole rounds).
    assert statistics.median(during) <= 1.5 * statistics.median(after) + 0.02, (
        statistics.median(during), statistics.median(after))


def test_calibrated_scores_follow_the_reference_distribution(switched) -> None:
    judge, _, _, _ = switched
    assert "default" not in status(judge)["calibration"]  # LLM_JUDGE_CALIBRATE is unset
    calibration = status(judge)["calibration"][JUDGE]
    assert calibration["reference"] == OLD and calibration["maps"][NEW]["pairs"] == RESERVOIR
    held_out = range(50_000, 50_200)
    verdicts = ray.get(judge.score_batch.remote(items(held_out, JUDGE)), timeout=WAIT_S)
    assert all(v.ok and v.backend == NEW and v.judge == JUDGE for v in verdicts)
    raw = [v.raw_score for v in verdicts]
    assert raw == [new_score(i) / 100 for i in held_out]
    calibrated = [v.score for v in verdicts]
    reference = [old_score(i) / 100 for i in held_out]
    assert ks_statistic(raw, reference) > 0.3  # what training would see uncalibrated
    assert ks_statistic(calibrated, reference) < 0.12
    assert statistics.fmean(calibrated) == pytest.approx(statistics.fmean(reference), abs=0.03)
    assert all(0.0 <= s <= 1.0 for s in calibrated)
    by_raw = sorted(zip(raw, calibrated, strict=True))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(by_raw))
    note = verdicts[0].extra["calibration"]
    assert note["calibrated"] is True and note["map"] == "quantile"
    assert note["reference"] == OLD and note["pairs"] == RESERVOIR and note["fitted_at"] > 0


def test_the_shift_plot_renders_the_pairs(switched, tmp_path) -> None:
    from ray_judge.shift.plot import render_shift_plot

    judge, _, _, _ = switched
    data = ray.get(judge.shift_pairs.remote(), timeout=30)[JUDGE]
    assert len(data["pairs"]) == data["map"]["pairs"] == RESERVOIR
    out = render_shift_plot(data, tmp_path / "shift.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    # The command, from pairs saved as JSON (what --save writes).
    from typer.testing import CliRunner

    from ray_judge.cli import app

    saved = tmp_path / "pairs.json"
    saved.write_text(json.dumps({JUDGE: data}))
    result = CliRunner().invoke(app, ["shift-plot", "--input", str(saved), "--judge", JUDGE,
                                      "--out", str(tmp_path / "cli.png")])
    assert result.exit_code == 0, result.output
    assert "cli.png: since" in result.output and (tmp_path / "cli.png").stat().st_size > 10_000
    result = CliRunner().invoke(app, ["shift-plot", "--input", str(saved), "--judge", "x"])
    assert result.exit_code == 1
    assert f"no shift measured for judge 'x'; judges with one: {JUDGE}" in result.output


def test_a_usage_limit_failover_never_calls_the_old_backend_again(
        cluster, providers, tmp_path_factory) -> None:
    from ray_judge.testing import Behaviour

    old, new = providers
    path = tmp_path_factory.mktemp("failover") / ".judge_backend"
    env = judge_env(providers, path, LLM_JUDGE_FALLBACK=NEW, LLM_JUDGE_RESERVOIR_SIZE="60",
                    LLM_JUDGE_CALIBRATE="quantile",
                    LLM_JUDGE_CALIBRATION_MIN_PAIRS="1000")  # more than there will be
    judge = ray_judge.start_judge(name="judge_failover", env=env)
    try:
        fill(judge, range(1000, 1060))
        old.default = Behaviour.usage_limit(int(time.time()) + 3 * 3600)
        old.clear()
        new.clear()
        verdicts = ray.get(judge.score_batch.remote(items(range(200_000, 200_020))),
                           timeout=WAIT_S)
        assert all(v.ok and v.backend == NEW for v in verdicts), verdicts[:1]
        report = wait_for(lambda: status(judge)["shift"].get("default", {}).get("done")
                          and status(judge)["shift"]["default"], "the re-judging")
        assert (report["old"], report["new"], report["n"]) == (OLD, NEW, 60)
        assert report["mean"] > 0.15
        # The reservoir was re-judged on the fallback only: not one of its requests went
        # to the provider that is out of quota.
        assert not [i for i in ids_seen(old) if i < 200_000]
        assert len({i for i in ids_seen(new) if i < 200_000}) == 60
        # Too few pairs for calibration: raw scores, saying so.
        after = ray.get(judge.score.remote("Solve the task.", answer(200_100)), timeout=60)
        assert after.ok and after.raw_score is None
        assert after.score == new_score(200_100) / 100
        assert after.extra["calibration"] == {"calibrated": False, "reference": OLD,
                                              "pairs": 60, "needed": 1000}
    finally:
        old.default = Behaviour()
        ray_judge.stop_judge(name="judge_failover")


def test_a_restarted_judge_keeps_its_reservoir_in_the_cache_file(switched) -> None:
    judge, _, _, env = switched
    before = status(judge)["reservoir"][JUDGE]
    assert before["entries"] == RESERVOIR
    ray_judge.stop_judge(name="judge_switch")
    judge = ray_judge.start_judge(name="judge_switch", env=env)
    assert status(judge)["reservoir"][JUDGE] == before
    assert ray.get(judge.shift_pairs.remote(), timeout=30) == {}  # a new run: no switch yet
