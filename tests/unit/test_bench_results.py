"""bench/RESULTS.md: each scenario's table is replaced by the bench's latest run, never
appended to, and the other scenarios' tables stay as they are. No Ray, no bench run."""

from __future__ import annotations

import re
from pathlib import Path

from bench.report import Report, Row, Target, replace_tables
from bench.run import RESULTS, SCENARIOS, _write_results

TEXT = """# results

<!-- bench:scenario 1:begin -->
old table of 1
<!-- bench:scenario 1:end -->

prose between
<!-- bench:scenario 2:begin -->
old table of 2
<!-- bench:scenario 2:end -->
"""


def report() -> Report:
    rep = Report(meta={"started": "2026-12-03T10:00:00+00:00", "command": "python -m bench",
                       "cpus": 2, "workers": 2, "versions": {"ray": "2.60.0"},
                       "load_at_1": 0.5})
    base = rep.add(Row("1", "baseline | direct", baseline=True, n=10, ok=10, rate=100.0))
    pool = rep.add(Row("1", "pool", n=10, ok=10, rate=400.0, cpu_s_per_req=0.0007,
                       p50_s=0.5, p99_s=0.9))
    rep.relate("1", base, [pool])
    rep.targets.append(Target("1", "pool / baseline", ">= 4x", 4.0, True))
    return rep


def test_markdown_has_one_row_per_case_and_the_targets() -> None:
    table = report().markdown("1")
    assert "| baseline \\| direct (baseline) | 10 | 10 | 100 | 1.00x |" in table
    assert "| pool | 10 | 10 | 400 | 4.00x | 0.0007 | 500ms | 900ms |" in table
    assert "| pool / baseline >= 4x | 4 | met |" in table
    assert "2026-12-03T10:00:00+00:00" in table


def test_replace_tables_replaces_only_the_named_scenario_and_twice_is_the_same() -> None:
    once = replace_tables(TEXT, {"1": "new table of 1"})
    assert "old table of 1" not in once and once.count("new table of 1") == 1
    assert "old table of 2" in once and "prose between" in once
    assert replace_tables(once, {"1": "new table of 1"}) == once  # replaced, not appended


def test_a_scenario_without_markers_is_not_added() -> None:
    assert replace_tables(TEXT, {"9": "table of 9"}) == TEXT


def test_skipped_and_failed_scenarios_keep_their_tables(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(TEXT)
    rep = report()
    rep.add(Row("2", "x", n=1, ok=0))
    rep.errors["2: Claude Code path"] = "RuntimeError: boom"
    _write_results(path, rep, ["1", "2"])
    text = path.read_text()
    assert "old table of 1" not in text and "| pool |" in text
    assert "old table of 2" in text


def test_results_file_has_markers_for_every_scenario() -> None:
    text = RESULTS.read_text()
    for key in SCENARIOS:
        assert len(re.findall(rf"<!-- bench:scenario {key}:(begin|end) -->", text)) == 2, key


def test_a_scenario_never_measured_before_gets_its_first_table() -> None:
    text = "intro\n<!-- bench:scenario 9:begin -->\n<!-- bench:scenario 9:end -->\nafter\n"
    once = replace_tables(text, {"9": "first table"})
    assert once == ("intro\n<!-- bench:scenario 9:begin -->\nfirst table\n"
                    "<!-- bench:scenario 9:end -->\nafter\n")
    assert replace_tables(once, {"9": "first table"}) == once
