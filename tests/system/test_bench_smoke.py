"""The benchmark harness runs at smoke size and writes well-formed JSON.

This checks that ``python -m bench`` works, end to end, in a subprocess as a person runs
it: fake providers, its own Ray cluster, the real CLI when there is one. It says nothing
about speed: a benchmark is not a timed test. Scenario 5 (``launch.sh``, a second Ray
cluster) runs in its own test, so each stays near a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.cli_support import CLI

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
ROW_KEYS = {"scenario", "case", "baseline", "n", "ok", "wall_s", "rate", "unit", "ratio",
            "cpu_s_per_req", "p50_s", "p99_s", "peak_mib", "note", "extra"}
TARGET_KEYS = {"scenario", "what", "target", "value", "met", "why"}


def run_bench(tmp_path: Path, *args: str, timeout: float = 240) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    token = uuid.uuid4().hex  # in the environment of everything the bench starts
    marker = f"RAY_JUDGE_BENCH_SMOKE={token}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "LLM_JUDGE_"))}
    env["RAY_JUDGE_BENCH_SMOKE"] = token
    if CLI is not None:
        env["CLAUDE_CLI_PATH"] = CLI
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--workers", "1",
                           "--json", str(out), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "targets:" in done.stdout or "scn" in done.stdout
    deadline = time.monotonic() + 30  # Ray's workers exit shortly after their raylet
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"the bench left processes running: {left}"
    return json.loads(out.read_text()), done.stdout


def processes_with(entry: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if entry.encode() in environ:
                found.append(int(pid))
    return found


def check_shape(report: dict) -> None:
    assert set(report) == {"meta", "rows", "targets", "skipped", "errors"}
    assert report["errors"] == {}
    meta = report["meta"]
    assert meta["smoke"] is True and meta["cpus"] >= 1
    assert len(meta["load_before"]) == 3 and len(meta["load_after"]) == 3
    for row in report["rows"]:
        assert set(row) == ROW_KEYS, row
        assert row["n"] > 0 and row["ok"] == row["n"], row  # every verdict came back ok
    for target in report["targets"]:
        assert set(target) == TARGET_KEYS, target
        assert target["met"] in (True, False, None)


def test_smoke_run_of_scenarios_1_to_4_writes_well_formed_json(tmp_path):
    report, table = run_bench(tmp_path, "--only", "4,2,1,3")
    check_shape(report)
    by_scenario: dict[str, list[dict]] = {}
    for row in report["rows"]:
        by_scenario.setdefault(row["scenario"], []).append(row)
    expected = {"1", "3", "4"} | ({"2"} if CLI is not None else set())
    assert set(by_scenario) == expected, report
    # Each scenario with a baseline reports ratios to it, measured in the same run.
    for scenario in ("1", "2") if CLI is not None else ("1",):
        rows = by_scenario[scenario]
        [base] = [r for r in rows if r["baseline"]]
        assert base["ratio"] == 1.0
        for row in rows:
            assert row["rate"] > 0 and row["ratio"] is not None
            assert row["cpu_s_per_req"] > 0 and row["p50_s"] <= row["p99_s"]
    assert {r["case"] for r in by_scenario["3"]} == {
        "switch with the notify", "switch file only (TTL 1 s)"}
    # 4, and the quality monitors' CPU on vs off (bench/s1_monitors.py)
    assert [t["scenario"] for t in report["targets"]].count("1") == 5
    if CLI is None:
        assert any(k.startswith("2") for k in report["skipped"])
    assert "override file reads" in table


def test_smoke_run_of_the_launch_scenario(tmp_path):
    report, _ = run_bench(tmp_path, "--only", "5")
    check_shape(report)
    rows = report["rows"]
    assert [r["scenario"] for r in rows] == ["5", "5", "5"]
    assert rows[0]["rate"] > 0 and rows[0]["extra"]["stop_ok"] is True
    for row in rows[1:]:
        assert row["extra"]["judge_mib"] > 0
        assert len(row["extra"]["workers_mib"]) == 1 and row["extra"]["workers_mib"][0] > 0


def test_smoke_run_of_the_groups_scenario(tmp_path):
    report, table = run_bench(tmp_path, "--only", "6")
    check_shape(report)
    rows = report["rows"]
    cases = 2 if CLI is not None else 1
    assert [r["scenario"] for r in rows] == ["6"] * 2 * cases
    for base, grouped in zip(rows[::2], rows[1::2], strict=True):
        assert base["baseline"] and not grouped["baseline"]
        assert base["n"] == grouped["n"] == 4 * 4
        # the fake provider counted the calls: one per group, one per response pointwise
        assert grouped["extra"]["backend_calls"] == 4 and base["extra"]["backend_calls"] == 16
    targets = [t for t in report["targets"] if t["scenario"] == "6"]
    assert len(targets) == cases and all(t["met"] for t in targets), targets
    assert "GRPO step" in table or "prompts x" in table


@pytest.mark.timeout(900)  # ~1.5 min on a quiet 2-core machine: kills, restarts, switches
def test_smoke_run_of_the_soak(tmp_path):
    # Faults make failed verdicts on purpose (hangs time out, storms exhaust retries):
    # what must hold is that every request got exactly one result.
    report, table = run_bench(tmp_path, "--only", "7", timeout=840)
    assert report["errors"] == {}, report["errors"]
    rows = report["rows"]
    assert [r["scenario"] for r in rows] == ["7"] * 3
    for row in rows:
        extra = row["extra"]
        assert row["n"] == 100 and sum(extra["statuses"].values()) == 100, row
        assert extra["lost"] == 0 and extra["duplicated"] == 0, row
        assert extra["judge"]["rss_mib"] > 0 and extra["judge"]["fds"] > 0
        assert len(extra["workers"]) == 1 and extra["workers"][0]["rss_mib"] > 0
        assert extra["cli_processes"] == 0 and extra["zombies"] == 0
    [lost] = [t for t in report["targets"] if t["what"].startswith("verdicts lost")]
    assert lost["met"] is True and lost["value"] == 0
    for kind in ("429 storm", "5xx", "hang/drop/malformed", "worker kill", "switch to B",
                 "judge kill", "switch to A"):
        assert f"'{kind}'" in lost["why"], lost["why"]
    assert rows[-1]["extra"]["client"]["judge_lost"] >= 1
    assert "soak verdicts 201-300" in table


def test_smoke_run_of_the_cost_scenario(tmp_path):
    report, table = run_bench(tmp_path, "--only", "8")  # no Ray: a few seconds
    check_shape(report)
    off, on, grouped = report["rows"]
    assert [r["scenario"] for r in report["rows"]] == ["8"] * 3 and off["baseline"]
    assert off["extra"]["cache_read_tokens"] == off["extra"]["cache_write_tokens"] == 0
    assert on["extra"]["cache_read_tokens"] > 0 and on["rate"] < off["rate"]
    assert grouped["extra"]["calls"] == 2 and on["extra"]["calls"] == off["extra"]["calls"] == 8
    assert [t["scenario"] for t in report["targets"]] == ["8", "8"]
    assert "USD/1k" in table
