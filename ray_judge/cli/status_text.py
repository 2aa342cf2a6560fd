"""The running judge's ``status()`` as text, for ``ray-judge status`` and ``show``.

What the text says is read once by :func:`~ray_judge.monitoring.status_view.read_status`,
the reading ``ray-judge watch`` draws too; here it is only put into lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..monitoring.quality_view import canary_lines, length_bias_lines
from ..monitoring.status_view import (
    CalibrationState,
    RewardServer,
    ShiftReport,
    calibrations,
    count_columns,
    insecure_text,
    read_status,
    reward_servers,
    shift_reports,
)
from ..pool.status import JudgeStatus

__all__ = ["format_live_status", "insecure_text", "reward_server_lines", "shift_lines"]


def format_live_status(status: JudgeStatus | Mapping[str, Any], *, warnings: bool = True) -> str:
    """A person's view of the judge's ``status()`` (``warnings``: the override file's)."""
    view = read_status(status)
    retries = f" (+{view.format_retries} correction turns)" if view.format_retries else ""
    per_backend = ", ".join(f"{b} {n}" for b, n in view.in_flight.items())
    per_backend = f" ({per_backend})" if per_backend else ""
    lines = [
        f"Running judge: serving {view.backend} (source: {view.source}), "
        f"up {view.uptime_s:.0f}s, {view.workers} workers",
        f"  load:     {view.in_flight_total} in flight{per_backend}, {view.queued} queued",
        f"  verdicts: {view.total} (p50 {view.latency_p50}, p95 {view.latency_p95}), "
        f"{view.retries} retries{retries}, "
        f"{view.switches} switches, cost ${view.cost_usd:.4f}",
    ]
    if view.judges:
        lines.append("  judges:   " + ", ".join(
            f"{name} ({version})" for name, version in view.judges.items()))
    columns = count_columns(view.counts)
    for backend, counts in sorted(view.counts.items()):
        detail = ", ".join(f"{k} {counts[k]}" for k in columns if k in counts)
        lines.append(f"    {backend}: {detail}")
    if view.fallback:
        lines.append(f"  failover: serving fallback {view.fallback} "
                     f"(failovers {view.failover.failovers})")
    lines += [f"  failover: {circuit.text()}" for circuit in view.failover.circuits]
    lines += [f"  prompt cache: {cache.text()}" for cache in view.prompt_cache]
    if view.budget:
        lines.append(f"  budget:   {view.budget.text()}")
    if view.hedging:
        lines.append(f"  hedging:  {view.hedging.text()}")
    lines += [f"  validation: {line}" for line in view.validation]
    for panel in view.panels:
        lines += [f"  panel:    {panel.text()}", f"            {panel.members_text()}"]
    lines += _shift_text(view.shift, view.calibration)
    lines += [f"  canaries: {line.text}" for line in canary_lines(status)]
    lines += [f"  length:   {line.text}" for line in length_bias_lines(status)]
    if view.override_problem:
        lines.append(f"  problem:  {view.override_problem}")
    if warnings:
        lines += [f"  warning:  {w}" for w in view.override_warnings]
    lines += _reward_server_text(view.reward_servers)
    return "\n".join(lines)


def reward_server_lines(status: Mapping[str, Any]) -> list[str]:
    """One line per running ``serve-rm``; a WARNING for one without a token."""
    return _reward_server_text(reward_servers(status))


def shift_lines(status: Mapping[str, Any]) -> list[str]:
    """The latest switch's score shift, one line per judge, and what calibration does."""
    return _shift_text(shift_reports(status), calibrations(status))


def _reward_server_text(servers: tuple[RewardServer, ...]) -> list[str]:
    lines = []
    for rm in servers:
        if rm.insecure:
            lines.append(f"  WARNING:  {insecure_text(rm.where)} (--insecure-no-token)")
        else:
            lines.append(f"  reward:   {rm.where}, {rm.access}")
    return lines


def _shift_text(reports: tuple[ShiftReport, ...],
                calibration: tuple[CalibrationState, ...]) -> list[str]:
    lines = [f"  shift:    {_judge(r.judge)}{r.line}" for r in reports]
    for c in calibration:
        maps = ", ".join(f"{b} on {pairs} pairs" for b, pairs in c.maps) or (
            f"none yet (needs {c.min_pairs} pairs)")
        lines.append(f"  calibrate: {_judge(c.judge)}{c.mode} onto {c.reference}; "
                     f"maps: {maps}")
    return lines


def _judge(name: str | None) -> str:
    return "" if name is None else f"judge {name} "
