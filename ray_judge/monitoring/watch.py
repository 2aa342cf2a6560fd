"""``ray-judge watch``: the running judge in a terminal, redrawn every second.

It reads only the judge's ``status()``, which runs in the actor's control concurrency
group (never queued behind scoring) and reads counters the judge keeps anyway, so
watching costs the judge one small call a second. When the judge goes away the view
says so and keeps looking for it; when it is back (restarted by Ray, or started again)
the view says that too.

Rendering (:func:`render`) is a pure function of what was polled, so it is tested
without a cluster; :func:`watch` is the loop around it. What it shows of a status is
read by :func:`~ray_judge.monitoring.status_view.read_status`, the same reading as the
text of ``ray-judge status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..config import JudgeConfig
from ..pool.status import JudgeStatus
from .quality_view import canary_lines, length_bias_lines
from .status_view import (
    FailoverState,
    Switch,
    clock,
    count_columns,
    insecure_text,
    read_status,
)

__all__ = ["Poller", "View", "render", "watch"]

#: Seconds a "judge is back" notice stays on screen.
NOTICE_S = 30.0
#: Bound on one status() call; a judge that does not answer within it counts as gone.
CALL_TIMEOUT_S = 5.0
#: Bound on connecting to the cluster at start.
CONNECT_TIMEOUT_S = 30.0


@dataclass
class View:
    """Everything one redraw shows: the last status, what was derived from the polls."""

    target: str
    status: JudgeStatus | None = None
    rate: float | None = None  # verdicts/s between the last two answers
    error: str | None = None  # why the last poll got no answer
    gone_since: float | None = None
    notice: tuple[float, str] | None = None  # (until, text)
    redraws: int = 0
    polled_at: float = field(default_factory=time.time)


class Poller:
    """Polls ``status()``; finds the judge again after it went away.

    ``fetch`` returns the status or raises with a reason; the default asks Ray.
    """

    def __init__(self, config: JudgeConfig,
                 fetch: Callable[[], JudgeStatus] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._fetch = fetch or self._ask_ray
        self._clock = clock
        self._handle: Any = None
        self._last: tuple[float, int] | None = None  # (time, total) of the last answer
        self.view = View(target=f"judge {config.actor_name!r} in namespace "
                         f"{config.namespace!r}")

    def poll(self) -> View:
        view, now = self.view, self._clock()
        view.redraws += 1
        view.polled_at = now
        try:
            status = self._fetch()
        except Exception as exc:  # whatever the reason, the view says it and retries
            self._handle = None
            view.error = _reason(exc)
            view.gone_since = view.gone_since or now
            view.rate = None
            return view
        previous = view.status
        if view.gone_since is not None:
            view.notice = (now + NOTICE_S, f"judge back at {clock(now)} after "
                           f"{_duration(now - view.gone_since)} away")
        elif previous and previous.get("started_at") != status.get("started_at"):
            view.notice = (now + NOTICE_S, f"judge restarted at {clock(status['started_at'])}")
        if previous and previous.get("started_at") != status.get("started_at"):
            self._last = None  # new counters: no rate across a restart
        view.error, view.gone_since, view.status = None, None, status
        total = int(status.get("total", 0))
        if self._last is not None and now > self._last[0]:
            view.rate = max(0, total - self._last[1]) / (now - self._last[0])
        self._last = (now, total)
        return view

    def _ask_ray(self) -> JudgeStatus:
        import ray

        from ..pool.cluster import find

        if self._handle is None:
            self._handle = find(self.config.actor_name, self.config.namespace)
        return ray.get(self._handle.status.remote(), timeout=CALL_TIMEOUT_S)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --------------------------------------------------------------------------- rendering


def render(view: View) -> RenderableType:
    """One frame of the view."""
    parts: list[RenderableType] = [Text.assemble(
        ("ray_judge", "bold"), f" · {view.target} · {clock(view.polled_at)} · "
        f"redraw {view.redraws} · Ctrl-C to quit", style="dim")]
    if view.error is not None:
        since = view.gone_since or view.polled_at
        parts.append(Text(f"judge not reachable since {clock(since)} "
                          f"({_duration(view.polled_at - since)}): {view.error}; "
                          "retrying every second", style="bold red"))
    if view.notice and view.notice[0] > view.polled_at:
        parts.append(Text(view.notice[1], style="bold green"))
    if view.status is not None:
        parts += _status_parts(view.status, view.rate, stale=view.error is not None)
    elif view.error is None:
        parts.append(Text("waiting for the first answer..."))
    return Group(*parts)


def _status_parts(status: JudgeStatus, rate: float | None,
                  *, stale: bool) -> list[RenderableType]:
    view = read_status(status)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold cyan", no_wrap=True)
    summary.add_column()
    backend = Text(view.backend, style="bold yellow" if stale else "bold green")
    if view.fallback:
        backend.append(f"  -> serving fallback {view.fallback}", style="bold red")
    summary.add_row("backend", backend)
    summary.add_row("source", f"{view.source}  (override file {view.override_file})")
    summary.add_row("uptime", f"{_duration(view.uptime_s)}  (since "
                    f"{clock(view.started_at or 0.0)}, pid {view.pid}, "
                    f"workers {view.workers})")
    speed = "-" if rate is None else f"{rate:.1f}"
    summary.add_row("verdicts", f"{speed}/s   {view.total:,} total   "
                    f"p50 {view.latency_p50}   p95 {view.latency_p95}   "
                    f"{view.retries:,} retries   cache {view.cached:,}   "
                    f"cost ${view.cost_usd:.4f}")
    load = ", ".join(f"{b} {n}" for b, n in view.in_flight.items()) or "none"
    summary.add_row("load", f"{view.queued:,} queued   in flight: {load}")
    summary.add_row("failover", _failover(view.failover))
    for cache in view.prompt_cache:
        summary.add_row("prompt cache", cache.text())
    if view.budget:
        summary.add_row("budget", Text(view.budget.text(),
                                       style="bold red" if view.budget.reached else ""))
    if view.hedging:  # late calls sent twice (see Tail latency)
        summary.add_row("hedging", view.hedging.text())
    for line in view.validation:  # the labelled cases, on every switch
        summary.add_row("validation", Text(line, style="bold red" if line.startswith(
            ("refused", "WARNING")) else ""))
    for panel in view.panels:  # judge panels: agreement, escalation, each member's share
        summary.add_row("panel", Text(f"{panel.text()}\n{panel.members_text()}"))
    for report in view.shift:
        # How far the reward moved with the latest switch (see Switch-aware rewards).
        name = "" if report.judge is None else f"judge {report.judge}: "
        summary.add_row("shift", f"{name}{report.line}")
    for row, lines in (("canaries", canary_lines(status)), ("length", length_bias_lines(status))):
        for line in lines:  # is the reward right (see Trust)
            summary.add_row(row, Text(line.text, style="bold red" if line.alarm else ""))
    problems = []
    if view.override_problem:
        problems.append(Text(view.override_problem, style="red"))
    problems += [Text(w, style="red") for w in view.override_warnings]
    summary.add_row("override", Group(*problems) if problems else Text("ok", style="green"))
    for rm in view.reward_servers:  # a serve-rm without a token is everyone's reward
        summary.add_row("reward", Text(f"WARNING: {insecure_text(rm.where)} "
                                       "(--insecure-no-token)", style="bold red")
                        if rm.insecure else Text(f"{rm.where}, {rm.access}"))
    if stale:
        summary.add_row("", Text("(last known values)", style="yellow"))
    return [summary, _counts_table(view.counts),
            _switches_table(view.recent_switches, view.switches)]


def _failover(state: FailoverState) -> Text:
    if not state.fallbacks:
        return Text("no fallback configured (LLM_JUDGE_FALLBACK)", style="dim")
    out = Text(f"failovers {state.failovers}; fallbacks {', '.join(state.fallbacks)}")
    for circuit in state.circuits:
        out.append(f"\n{circuit.text()}", style="bold red")
    return out


def _counts_table(counts: dict[str, dict[str, int]]) -> Table:
    columns = count_columns(counts)
    table = Table(title="verdicts by backend and status", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend")
    for status in columns:
        table.add_column(status, justify="right",
                         style="green" if status == "ok" else "red")
    for backend, per in sorted(counts.items()):
        table.add_row(backend, *(Text(f"{per.get(s, 0):,}", style="dim") if not per.get(s)
                                 else f"{per[s]:,}" for s in columns))
    if not counts:
        table.add_row("(no verdicts yet)")
    return table


def _switches_table(recent: tuple[Switch, ...], total: int) -> Table:
    table = Table(title=f"last backend changes ({total} in all)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("at", "from", "to", "why"):
        table.add_column(name)
    for change in recent:
        table.add_row(clock(change.at), change.source, change.target, change.why,
                      style="bold red" if change.why == "failover" else None)
    if not recent:
        table.add_row("-", "", "", "none yet")
    return table


# -------------------------------------------------------------------------------- loop


def watch(config: JudgeConfig, address: str, *, interval_s: float = 1.0,
          console: Console | None = None) -> None:
    """Redraw the judge's status every ``interval_s`` until Ctrl-C."""
    from ..pool.cluster import connect

    connect(address, namespace=config.namespace, quiet=True, wait_s=CONNECT_TIMEOUT_S)
    console = console or Console()
    poller = Poller(config)
    try:
        with Live(render(poller.view), console=console, auto_refresh=False,
                  vertical_overflow="visible") as live:
            while True:
                started = time.monotonic()
                live.update(render(poller.poll()), refresh=True)
                time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        console.print("Stopped watching (Ctrl-C); the judge runs on.")
