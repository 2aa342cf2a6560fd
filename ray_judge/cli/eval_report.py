"""What ``ray-judge eval`` prints and writes: the table, the worst cases, the JSON.

One rich table with the backends side by side, a row per figure that applies to the
cases given (the best value of a row in bold when several backends are compared); then
per backend its worst cases, one line each (expected vs got, and with ``--show-raw``
the judge's own text). :func:`report_json` is the ``--json`` file:
``{"backends": {spec: {figure: value}}, "cases": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from ..quality.metrics import LOWER_IS_BETTER, METRICS, Judged, as_json

__all__ = ["metrics_table", "report_json", "worst_lines"]

_SHARES = {"ok", "in_range", "accuracy", "tpr", "tnr", "position_consistency", "escalated"}
#: always shown, even when no backend has a value
_ALWAYS = {"cases", "ok", "parse_failures", "cost_usd", "tokens", "latency_p50_s",
           "latency_p95_s"}


def _cell(metric: str, value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if metric in _SHARES:
        return f"{value:.0%}"
    if metric == "cost_usd":
        return f"${value:.4f}"
    if metric.startswith("latency"):
        return f"{value:.2f} s"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def metrics_table(backends: Mapping[str, Mapping[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="cyan", no_wrap=True)
    for backend in backends:
        table.add_column(backend, justify="right", overflow="fold")
    for metric in METRICS:
        values = [m.get(metric) for m in backends.values()]
        if metric not in _ALWAYS and all(v is None for v in values):
            continue
        best = _best(metric, values) if len(values) > 1 and metric not in _ALWAYS else None
        table.add_row(metric,
                      *(f"[bold]{_cell(metric, v)}[/bold]" if v is not None and v == best
                        else _cell(metric, v) for v in values))
    return table


def _best(metric: str, values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    if len(known) < 2 or len(set(known)) == 1:
        return None
    return min(known) if metric in LOWER_IS_BETTER else max(known)


def _expected(judged: Judged) -> str:
    case = judged.case
    if case.label == "range":
        return f"range {case.expected[0]:g}-{case.expected[1]:g}"
    if case.label == "pass":
        return "pass" if case.expected else "fail"
    if case.label == "ranking":
        return f"ranking {list(case.expected)}"
    if case.label == "preferred":
        return f"preferred {case.expected}"
    return f"{case.expected:g}"


def _got(judged: Judged) -> str:
    got, case = judged.got, judged.case
    if case.label == "pass":
        verdict = "pass" if judged.passed else "fail"
        return f"{got:g} ({verdict} at {judged.threshold:g})"
    if case.label == "ranking":
        return "scores [" + ", ".join(f"{g:g}" for g in got) + "]"
    if case.label == "preferred":
        return str(got)
    return f"{got:.3g}"


def _first(result: Any) -> Any:
    return result[0] if isinstance(result, (list, tuple)) else result


def worst_lines(judged: Sequence[Judged], *, limit: int = 5,
                show_raw: bool = False) -> list[str]:
    """The ``limit`` worst wrong cases (failures first), one line each."""
    wrong = sorted((j for j in judged if j.error > 0), key=lambda j: (-j.error, j.case.line))
    lines = []
    for j in wrong[:limit]:
        head = f"line {j.case.line}" + (f" ({j.case.id})" if j.case.id else "")
        verdict = _first(j.samples[0])
        if j.got is None:
            failed = next(v for v in (j.samples[0] if isinstance(j.samples[0], (list, tuple))
                                      else [j.samples[0]]) if not v.ok)
            line = f"{head}: expected {_expected(j)}, got no score: {failed.status}: " \
                   f"{failed.error}"
        else:
            line = f"{head}: expected {_expected(j)}, got {_got(j)}"
            if j.case.why:
                line += f"; why: {j.case.why}"
        if show_raw and verdict.raw:
            line += f"\n      raw: {' '.join(verdict.raw.split())[:300]}"
        lines.append(line)
    return lines


def report_json(backends: Mapping[str, Mapping[str, Any]],
                results: Mapping[str, Sequence[Judged]], *, samples: int,
                threshold: float | None) -> dict[str, Any]:
    """``{"backends": {spec: figures}, "cases": [one per case, each backend's verdicts]}``."""
    names = list(results)
    cases = []
    for i, judged in enumerate(results[names[0]] if names else []):
        case = judged.case
        cases.append({"line": case.line, "id": case.id, "kind": case.kind,
                      "judge": case.judge, "label": case.label, "expected": case.expected,
                      "why": case.why,
                      "backends": {name: {k: v for k, v in results[name][i].to_dict().items()
                                          if k in ("got", "ok", "error", "verdicts")}
                                   for name in names}})
    return {"backends": {name: as_json(m) for name, m in backends.items()},
            "samples": samples, "threshold": threshold, "cases": cases}
