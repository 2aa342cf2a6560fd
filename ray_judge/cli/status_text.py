"""The running judge's ``status()`` as text, for ``ray-judge status`` and ``show``."""

from __future__ import annotations

__all__ = ["format_live_status", "insecure_text", "reward_server_lines", "shift_lines"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _format_retries(status: dict) -> str:
    n = status.get("format_retries") or 0
    return f" (+{n} correction turns)" if n else ""


def format_live_status(status: dict, *, warnings: bool = True) -> str:
    """A person's view of the judge's ``status()`` (``warnings``: the override file's)."""
    in_flight = sum(status.get("in_flight", {}).values())
    lines = [
        f"Running judge: serving {status['backend']} (source: {status['source']}), "
        f"up {status['uptime_s']:.0f}s, {status['workers']} workers",
        f"  load:     {in_flight} in flight, {status['queued']} queued",
        f"  verdicts: {status['total']} (p50 {_seconds(status['latency_p50_s'])}, "
        f"p95 {_seconds(status['latency_p95_s'])}), {status['retries']} retries"
        f"{_format_retries(status)}, "
        f"{status['switches']} switches, cost ${status['cost_usd']:.4f}",
    ]
    if status.get("judges"):
        lines.append("  judges:   " + ", ".join(
            f"{name} ({version})" for name, version in status["judges"].items()))
    for backend, counts in status.get("counts", {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"    {backend}: {detail}")
    lines += shift_lines(status)
    if status.get("override_problem"):
        lines.append(f"  problem:  {status['override_problem']}")
    if warnings:
        lines += [f"  warning:  {w}; whoever can write it can change the reward"
                  for w in status.get("override_warnings") or []]
    lines += reward_server_lines(status)
    return "\n".join(lines)


def reward_server_lines(status: dict) -> list[str]:
    """One line per running ``serve-rm``; a WARNING for one without a token."""
    lines = []
    for rm in status.get("reward_servers") or []:
        where = f"{rm['url']} (pid {rm['pid']} on {rm['node']})"
        if rm["insecure"]:
            lines.append(f"  WARNING:  {insecure_text(where)} (--insecure-no-token)")
        else:
            lines.append(f"  reward:   {where}, "
                         f"{'token required' if rm['token'] else 'loopback only, no token'}")
    return lines


def shift_lines(status: dict) -> list[str]:
    """The latest switch's score shift, one line per judge, and what calibration does."""
    lines = []
    for judge, report in sorted((status.get("shift") or {}).items()):
        name = "" if judge == "default" else f"judge {judge} "
        lines.append(f"  shift:    {name}{report['line']}")
    for judge, calibration in sorted((status.get("calibration") or {}).items()):
        name = "" if judge == "default" else f"judge {judge} "
        maps = ", ".join(f"{b} on {m['pairs']} pairs"
                         for b, m in sorted(calibration["maps"].items())) or (
            f"none yet (needs {calibration['min_pairs']} pairs)")
        lines.append(f"  calibrate: {name}{calibration['mode']} onto "
                     f"{calibration['reference']}; maps: {maps}")
    return lines


def insecure_text(where: str) -> str:
    return (f"the reward server on {where} listens beyond loopback without a token: anyone "
            "who can reach it can read what the judge is asked and set the rewards the "
            "trainer gets")
