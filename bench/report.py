"""What a scenario reports: rows of figures, targets met or missed, a table, JSON, and
each scenario's table in bench/RESULTS.md, replaced on every run."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One measured case. ``ratio`` is against the baseline row of the same scenario."""

    scenario: str
    case: str
    baseline: bool = False
    n: int = 0
    ok: int = 0
    wall_s: float | None = None
    rate: float | None = None  # per second
    unit: str = "req/s"
    ratio: float | None = None
    cpu_s_per_req: float | None = None
    p50_s: float | None = None
    p99_s: float | None = None
    peak_mib: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    scenario: str
    what: str
    target: str
    value: float | None
    met: bool | None  # None: not measured in this run
    why: str = ""


@dataclass
class Report:
    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def relate(self, scenario: str, baseline: Row, rows: list[Row]) -> None:
        """Set each row's ratio to the baseline's rate."""
        for row in rows:
            if baseline.rate and row.rate is not None:
                row.ratio = row.rate / baseline.rate
        baseline.ratio = 1.0

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            if isinstance(value, float):
                return None if not math.isfinite(value) else round(value, 6)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return clean({"meta": self.meta, "rows": [asdict(r) for r in self.rows],
                      "targets": [asdict(t) for t in self.targets],
                      "skipped": self.skipped, "errors": self.errors})

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def table(self) -> str:
        head = ["scn", "case", "n", "ok", "rate", "x base", "CPU-s/req", "p50", "p99",
                "peak MiB", "note"]
        lines = [head]
        for r in self.rows:
            lines.append([
                r.scenario, r.case + (" (baseline)" if r.baseline else ""), str(r.n),
                str(r.ok), _num(r.rate, r.unit), _ratio(r.ratio), _num(r.cpu_s_per_req),
                _secs(r.p50_s), _secs(r.p99_s), _num(r.peak_mib), r.note])
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        out = ["  ".join(c.ljust(w) if i in (1, len(head) - 1) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()
               for line in lines]
        out.insert(1, "  ".join("-" * w for w in widths))
        if self.targets:
            out += ["", "targets:"]
            for t in self.targets:
                verdict = {True: "MET", False: "MISSED", None: "n/a"}[t.met]
                value = "-" if t.value is None else f"{t.value:.3g}"
                why = f"  ({t.why})" if t.why else ""
                out.append(f"  [{verdict}] {t.scenario}: {t.what}: {value} (target {t.target})"
                           f"{why}")
        for name, why in self.skipped.items():
            out.append(f"  [skipped] {name}: {why}")
        for name, why in self.errors.items():
            out.append(f"  [error] {name}: {why}")
        return "\n".join(out)


    def markdown(self, scenario: str) -> str:
        """One scenario's rows and targets as Markdown tables, for bench/RESULTS.md."""
        meta = self.meta
        versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
        out = [f"Run of {meta.get('started', '?')}, `{meta.get('command', 'python -m bench')}`, "
               f"{meta.get('cpus', '?')} CPUs, {meta.get('workers', '?')} workers, {versions}; "
               f"load average at the start {meta.get(f'load_at_{scenario}', '?')}.", "",
               "| case | n | ok | rate | x baseline | CPU-s/req | p50 | p99 | peak MiB | note |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if r.scenario == scenario:
                cells = [r.case + (" (baseline)" if r.baseline else ""), str(r.n), str(r.ok),
                         _num(r.rate, r.unit), _ratio(r.ratio), _num(r.cpu_s_per_req),
                         _secs(r.p50_s), _secs(r.p99_s), _num(r.peak_mib), r.note]
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        targets = [t for t in self.targets if t.scenario == scenario]
        if targets:
            out += ["", "| target | measured | |", "|---|---|---|"]
            for t in targets:
                value = "-" if t.value is None else f"{t.value:.3g}"
                verdict = {True: "met", False: "MISSED", None: "n/a"}[t.met]
                why = f" ({t.why})" if t.why else ""
                out.append(f"| {t.what} {t.target} | {value}{why} | {verdict} |")
        return "\n".join(out)


def replace_tables(text: str, tables: dict[str, str]) -> str:
    """``text`` with each scenario's table between its markers replaced by ``tables[n]``.

    A scenario's markers are ``<!-- bench:scenario N:begin -->`` and ``...:end -->``; one
    without markers in ``text`` is left out rather than appended (say where it goes first).
    """
    for scenario, table in tables.items():
        # The block between the markers may be empty (a scenario never measured yet).
        pattern = re.compile(rf"(<!-- bench:scenario {re.escape(scenario)}:begin -->\n)"
                             rf"(?:.*?\n)?(<!-- bench:scenario {re.escape(scenario)}:end -->)",
                             re.DOTALL)
        text = pattern.sub(lambda m, t=table: m.group(1) + t.strip("\n") + "\n" + m.group(2),
                           text, count=1)
    return text


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{text} {unit}".strip() if unit and unit != "req/s" else text


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"
