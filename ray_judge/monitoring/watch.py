"""``ray-judge watch``: the running judge in a terminal, redrawn every second.

It reads only the judge's ``status()``, which runs in the actor's control concurrency
group (never queued behind scoring) and reads counters the judge keeps anyway, so
watching costs the judge one small call a second. When the judge goes away the view
says so and keeps looking for it; when it is back (restarted by Ray, or started again)
the view says that too.

Rendering (:func:`render`) is a pure function of what was polled, so it is tested
without a cluster; :func:`watch` is the loop around it.
"""

from __future__ import annotations

import logging
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

__all__ = ["Poller", "View", "render", "watch"]

#: Seconds a "judge is back" notice stays on screen.
NOTICE_S = 30.0
#: Bound on one status() call; a judge that does not answer within it counts as gone.
CALL_TIMEOUT_S = 5.0
#: Bound on connecting to the cluster at start.
CONNECT_TIMEOUT_S = 30.0
#: The failure statuses, in the order the table shows them (ok first).
STATUS_ORDER = ("ok", "parse_error", "timeout", "rate_limited", "usage_limited",
                "auth_error", "backend_error", "invalid_input")


@dataclass
class View:
    """Everything one redraw shows: the last status, what was derived from the polls."""

    target: str
    status: dict[str, Any] | None = None
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
                 fetch: Callable[[], dict[str, Any]] | None = None,
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
            view.notice = (now + NOTICE_S, f"judge back at {_clock(now)} after "
                           f"{_duration(now - view.gone_since)} away")
        elif previous and previous.get("started_at") != status.get("started_at"):
            view.notice = (now + NOTICE_S, f"judge restarted at {_clock(status['started_at'])}")
        if previous and previous.get("started_at") != status.get("started_at"):
            self._last = None  # new counters: no rate across a restart
        view.error, view.gone_since, view.status = None, None, status
        total = int(status.get("total", 0))
        if self._last is not None and now > self._last[0]:
            view.rate = max(0, total - self._last[1]) / (now - self._last[0])
        self._last = (now, total)
        return view

    def _ask_ray(self) -> dict[str, Any]:
        import ray

        if self._handle is None:
            try:
                self._handle = ray.get_actor(self.config.actor_name,
                                             namespace=self.config.namespace)
            except ValueError:
                raise LookupError("no such actor in the cluster") from None
        return ray.get(self._handle.status.remote(), timeout=CALL_TIMEOUT_S)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


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


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


# --------------------------------------------------------------------------- rendering


def render(view: View) -> RenderableType:
    """One frame of the view."""
    parts: list[RenderableType] = [Text.assemble(
        ("ray_judge", "bold"), f" · {view.target} · {_clock(view.polled_at)} · "
        f"redraw {view.redraws} · Ctrl-C to quit", style="dim")]
    if view.error is not None:
        since = view.gone_since or view.polled_at
        parts.append(Text(f"judge not reachable since {_clock(since)} "
                          f"({_duration(view.polled_at - since)}): {view.error}; "
                          "retrying every second", style="bold red"))
    if view.notice and view.notice[0] > view.polled_at:
        parts.append(Text(view.notice[1], style="bold green"))
    if view.status is not None:
        parts += _status_parts(view.status, view.rate, stale=view.error is not None)
    elif view.error is None:
        parts.append(Text("waiting for the first answer..."))
    return Group(*parts)


def _status_parts(status: dict[str, Any], rate: float | None,
                  *, stale: bool) -> list[RenderableType]:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold cyan", no_wrap=True)
    summary.add_column()
    backend = Text(status["backend"], style="bold yellow" if stale else "bold green")
    failover = status.get("failover") or {}
    serving = failover.get("serving")
    if failover.get("open") and serving and serving != status["backend"]:
        # ``serving`` is the last backend a round went to: only news while on a fallback.
        backend.append(f"  -> serving fallback {serving}", style="bold red")
    summary.add_row("backend", backend)
    summary.add_row("source", f"{status['source']}  (override file {status['override_file']})")
    summary.add_row("uptime", f"{_duration(status['uptime_s'])}  (since "
                    f"{_clock(status['started_at'])}, pid {status['pid']}, "
                    f"workers {status['workers']})")
    speed = "-" if rate is None else f"{rate:.1f}"
    summary.add_row("verdicts", f"{speed}/s   {status['total']:,} total   "
                    f"p50 {_seconds(status['latency_p50_s'])}   "
                    f"p95 {_seconds(status['latency_p95_s'])}   "
                    f"{status['retries']:,} retries   cache {status.get('cached', 0):,}   "
                    f"cost ${status['cost_usd']:.4f}")
    in_flight = status.get("in_flight") or {}
    load = ", ".join(f"{b} {n}" for b, n in sorted(in_flight.items()) if n) or "none"
    summary.add_row("load", f"{status['queued']:,} queued   in flight: {load}")
    summary.add_row("failover", _failover(failover))
    for judge, report in sorted((status.get("shift") or {}).items()):
        # How far the reward moved with the latest switch (see Switch-aware rewards).
        name = "" if judge == "default" else f"judge {judge}: "
        summary.add_row("shift", f"{name}{report['line']}")
    problems = []
    if status.get("override_problem"):
        problems.append(Text(status["override_problem"], style="red"))
    problems += [Text(f"{w}; whoever can write it can change the reward", style="red")
                 for w in status.get("override_warnings") or []]
    summary.add_row("override", Group(*problems) if problems else Text("ok", style="green"))
    if stale:
        summary.add_row("", Text("(last known values)", style="yellow"))
    return [summary, _counts_table(status.get("counts") or {}),
            _switches_table(status.get("recent_switches") or [], status.get("switches", 0))]


def _failover(snapshot: dict[str, Any]) -> Text:
    fallbacks = snapshot.get("fallbacks") or []
    if not fallbacks:
        return Text("no fallback configured (LLM_JUDGE_FALLBACK)", style="dim")
    out = Text(f"failovers {snapshot.get('failovers', 0)}; fallbacks {', '.join(fallbacks)}")
    for backend, circuit in sorted((snapshot.get("open") or {}).items()):
        state = "probing" if circuit.get("probing") else f"until {_clock(circuit['until'])}"
        out.append(f"\n{backend} OUT ({state}): {circuit.get('reason', '')}", style="bold red")
    return out


def _counts_table(counts: dict[str, dict[str, int]]) -> Table:
    seen = {s for per in counts.values() for s in per}
    columns = [s for s in STATUS_ORDER if s in seen] + sorted(seen - set(STATUS_ORDER))
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


def _switches_table(recent: list[dict[str, Any]], total: int) -> Table:
    table = Table(title=f"last backend changes ({total} in all)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("at", "from", "to", "why"):
        table.add_column(name)
    for change in list(recent)[-5:]:
        table.add_row(_clock(change["at"]), change["from"], change["to"], change["why"],
                      style="bold red" if change["why"] == "failover" else None)
    if not recent:
        table.add_row("-", "", "", "none yet")
    return table


# -------------------------------------------------------------------------------- loop


def watch(config: JudgeConfig, address: str, *, interval_s: float = 1.0,
          console: Console | None = None) -> None:
    """Redraw the judge's status every ``interval_s`` until Ctrl-C."""
    import ray

    from ..pool.cluster import bounded

    logging.getLogger("ray").setLevel(logging.ERROR)
    # Bounded: ray.init() retries a wrong or dead address for minutes, in silence.
    bounded(lambda: ray.init(address=address, namespace=config.namespace,
                              log_to_driver=False, logging_level=logging.ERROR,
                              configure_logging=False),
             CONNECT_TIMEOUT_S, f"connecting to Ray at {address}")
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
