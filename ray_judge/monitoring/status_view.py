"""One reading of the judge's ``status()``, for every view of it.

``ray-judge status`` and ``switch_judge_backend.py show`` print it as text
(:mod:`ray_judge.cli.status_text`); ``ray-judge watch`` draws it live (:mod:`.watch`).
Both read a :class:`~ray_judge.pool.status.JudgeStatus` through :func:`read_status`, so
which backend is served, the counts, the latency, the load, the failover state, the
switches, the shift and the warnings are worked out once, here, and the two views only
format them. Pure functions: no rich, no ray (``show`` imports this and must answer in a
blink).

Older callers and tests hand in partial dicts; every key a view can do without is read
with a default.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .panel_view import PanelState, panel_states

if TYPE_CHECKING:
    from ..pool.status import JudgeStatus

__all__ = ["STATUS_ORDER", "BudgetState", "CalibrationState", "Circuit", "FailoverState",
           "PromptCache", "RewardServer", "ShiftReport", "StatusView", "Switch", "calibrations",
           "clock", "count_columns", "insecure_text", "read_status", "reward_servers", "seconds",
           "shift_reports"]

#: The verdict statuses in the order the views show them (ok first), then any other.
STATUS_ORDER = ("ok", "parse_error", "timeout", "rate_limited", "usage_limited",
                "auth_error", "backend_error", "invalid_input", "budget_exhausted")
#: How many of the latest backend changes a view shows.
RECENT_SWITCHES = 5
#: What follows each warning about the override file's permissions.
_OVERRIDE_RISK = "whoever can write it can change the reward"


def seconds(value: float | None) -> str:
    """A latency: ``0.80s``, or ``-`` before the first verdict."""
    return "-" if value is None else f"{value:.2f}s"


def clock(epoch: float) -> str:
    """A moment of today, as a person reads it: ``14:02:03`` (local time)."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def insecure_text(where: str) -> str:
    """Why a reward server without a token beyond loopback is a risk (``where`` it runs)."""
    return (f"the reward server on {where} listens beyond loopback without a token: anyone "
            "who can reach it can read what the judge is asked and set the rewards the "
            "trainer gets")


@dataclass(frozen=True)
class Circuit:
    """A backend the failover chain has taken out of service for now."""

    backend: str
    until: float | None
    probing: bool  # half-open: one request goes through to see if it is back
    reason: str

    def text(self) -> str:
        """``litellm:a OUT (until 14:02:03): auth_error: bad key``."""
        when = "probing" if self.probing else f"until {clock(self.until or 0.0)}"
        return f"{self.backend} OUT ({when}): {self.reason}"


@dataclass(frozen=True)
class FailoverState:
    """The failover chain: its fallbacks, how often it failed over, what is out."""

    fallbacks: tuple[str, ...]
    failovers: int
    circuits: tuple[Circuit, ...]  # open ones, by backend


@dataclass(frozen=True)
class Switch:
    """One backend change: a switch of the override file, a failover, or a return."""

    at: float
    source: str
    target: str
    why: str


@dataclass(frozen=True)
class ShiftReport:
    """How far the scores moved with the latest switch, for one judge definition."""

    judge: str | None  # None: the default judge
    line: str


@dataclass(frozen=True)
class CalibrationState:
    """What calibration does for one judge definition: onto which backend, with which maps."""

    judge: str | None  # None: the default judge
    mode: str
    reference: str
    maps: tuple[tuple[str, int], ...]  # (backend, pairs fitted on), by backend
    min_pairs: int


@dataclass(frozen=True)
class RewardServer:
    """A running ``serve-rm``, as it announced itself."""

    where: str  # "URL (pid P on NODE)"
    insecure: bool  # listens beyond loopback without a token
    token: bool

    @property
    def access(self) -> str:
        """Who may ask it, when it is not insecure."""
        return "token required" if self.token else "loopback only, no token"


@dataclass(frozen=True)
class PromptCache:
    """A provider's own prompt cache, for one backend (not ray_judge's verdict cache)."""

    backend: str
    input_tokens: int
    read_tokens: int
    write_tokens: int

    def text(self) -> str:
        """``litellm:anthropic/x 83% of 48,000 input tokens read from cache, 3,206 written``."""
        share = self.read_tokens / self.input_tokens if self.input_tokens else 0.0
        return (f"{self.backend} {share:.0%} of {self.input_tokens:,} input tokens read "
                f"from cache, {self.write_tokens:,} written")


@dataclass(frozen=True)
class BudgetState:
    """The spend budget (``LLM_JUDGE_BUDGET_USD``): spend, limits, when the hour refills."""

    policy: str
    spent_usd: float
    limit_usd: float | None  # the run's
    hour_spent_usd: float
    hour_limit_usd: float | None
    reached: str | None  # "run" or "hour"
    refill_at: float | None
    refill_in_s: float | None

    def text(self) -> str:
        """``12.40 of 500 USD spent, 18.20 of 20 USD in the last hour (policy fallback)``,
        then what is reached and when the hour refills."""
        parts = []
        if self.limit_usd is not None:
            parts.append(f"{self.spent_usd:.2f} of {self.limit_usd:g} USD spent")
        if self.hour_limit_usd is not None:
            parts.append(f"{self.hour_spent_usd:.2f} of {self.hour_limit_usd:g} USD in the "
                         "last hour")
        line = f"{', '.join(parts)} (policy {self.policy})"
        if self.reached == "run":
            return f"{line}; RUN LIMIT REACHED"
        if self.reached == "hour" and self.refill_at is not None:
            return (f"{line}; HOURLY LIMIT REACHED, refills in {self.refill_in_s or 0:.0f}s "
                    f"(at {clock(self.refill_at)})")
        return line


@dataclass(frozen=True)
class HedgingState:
    """Hedged calls (``status()["hedging"]``): how many, how often they won, their cost."""

    sent: int
    won: int
    window_hedges: int
    window_requests: int
    share_cap: float
    loser_tokens: int
    loser_cost_usd: float
    refused: dict[str, int]

    def text(self) -> str:
        """``9 sent, 7 won; last minute 3 of 512 requests (cap 5%); losers 1,200 tokens,
        0.0004 USD; refused: share 40``."""
        share = self.window_hedges / self.window_requests if self.window_requests else 0.0
        line = (f"{self.sent:,} sent, {self.won:,} won; last minute {self.window_hedges:,} "
                f"of {self.window_requests:,} requests ({share:.1%}, cap {self.share_cap:.0%})")
        if self.loser_tokens or self.loser_cost_usd:
            line += (f"; losers {self.loser_tokens:,} tokens, "
                     f"{self.loser_cost_usd:.4f} USD")
        refused = ", ".join(f"{why} {n:,}" for why, n in sorted(self.refused.items()))
        return f"{line}; refused: {refused}" if refused else line


@dataclass(frozen=True)
class StatusView:
    """What every view of the judge shows, read once from its status."""

    backend: str  # selected by the override file and the default, before failover
    fallback: str | None  # the fallback served instead while ``backend`` is out
    source: str
    override_file: str | None
    override_problem: str | None
    override_warnings: tuple[str, ...]  # whole sentences
    started_at: float | None
    uptime_s: float
    pid: int | None
    workers: int
    total: int
    retries: int
    format_retries: int  # correction turns
    cached: int
    cost_usd: float
    latency_p50: str
    latency_p95: str
    queued: int
    in_flight: dict[str, int]  # backends with requests in flight, by backend
    in_flight_total: int
    counts: dict[str, dict[str, int]]  # backend -> verdict status -> count
    judges: dict[str, str]  # name -> version
    failover: FailoverState
    switches: int
    recent_switches: tuple[Switch, ...]  # the latest, oldest first
    shift: tuple[ShiftReport, ...]
    calibration: tuple[CalibrationState, ...]
    reward_servers: tuple[RewardServer, ...]
    prompt_cache: tuple[PromptCache, ...]  # backends whose provider reported cache use
    budget: BudgetState | None  # None: no spend limit is set
    hedging: HedgingState | None  # None: hedging is off, or nothing was ever hedged
    validation: tuple[str, ...]  # lines: each validated backend, a held or refused switch
    panels: tuple[PanelState, ...] = ()  # judge panels (issue 23), by name


def read_status(status: JudgeStatus | Mapping[str, Any]) -> StatusView:
    """Read a :class:`~ray_judge.pool.status.JudgeStatus` (or an older, partial dict)."""
    in_flight = status.get("in_flight") or {}
    failover = status.get("failover") or {}
    return StatusView(
        backend=status["backend"],
        fallback=_fallback(status["backend"], failover),
        source=status["source"],
        override_file=status.get("override_file"),
        override_problem=status.get("override_problem"),
        override_warnings=tuple(f"{w}; {_OVERRIDE_RISK}"
                                for w in status.get("override_warnings") or []),
        started_at=status.get("started_at"),
        uptime_s=status["uptime_s"],
        pid=status.get("pid"),
        workers=status["workers"],
        total=int(status["total"]),
        retries=status["retries"],
        format_retries=status.get("format_retries") or 0,
        cached=status.get("cached", 0),
        cost_usd=status["cost_usd"],
        latency_p50=seconds(status["latency_p50_s"]),
        latency_p95=seconds(status["latency_p95_s"]),
        queued=status["queued"],
        in_flight={b: n for b, n in sorted(in_flight.items()) if n},
        in_flight_total=sum(in_flight.values()),
        counts=dict(status.get("counts") or {}),
        judges=dict(status.get("judges") or {}),
        failover=_failover_state(failover),
        switches=status.get("switches", 0),
        recent_switches=tuple(
            Switch(at=c["at"], source=c["from"], target=c["to"], why=c["why"])
            for c in list(status.get("recent_switches") or [])[-RECENT_SWITCHES:]),
        shift=shift_reports(status),
        calibration=calibrations(status),
        reward_servers=reward_servers(status),
        prompt_cache=tuple(
            PromptCache(backend=b, input_tokens=c["input_tokens"],
                        read_tokens=c["read_tokens"], write_tokens=c["write_tokens"])
            for b, c in sorted((status.get("prompt_cache") or {}).items())
            if c["read_tokens"] or c["write_tokens"]),
        budget=_budget(status.get("budget")),
        hedging=_hedging(status.get("hedging")),
        validation=validation_lines(status.get("validation")),
        panels=panel_states(status),
    )


def validation_lines(validation: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The serving backend's validation, the previous one's beside it, a switch held or
    refused by the gate, failovers that serve though they fell short."""
    if not validation:
        return ()
    lines = []
    for role in ("serving", "previous"):
        name = validation.get(role)
        record = (validation.get("backends") or {}).get(name)
        if record is not None:
            lines.append(f"{name} ({role}): {record['line']}")
    pending = validation.get("pending")
    if pending is not None:
        lines.append(f"switch to {pending['backend']} held: {pending['line']}")
    if validation.get("refused"):
        lines.append(str(validation["refused"]))
    lines += [f"WARNING: {flag}" for flag in validation.get("flagged") or []]
    return tuple(lines)


def _hedging(hedging: Mapping[str, Any] | None) -> HedgingState | None:
    if not hedging or not hedging.get("enabled") or not (
            hedging.get("sent") or hedging.get("refused")):
        return None
    return HedgingState(**{name: hedging[name] for name in (
        "sent", "won", "window_hedges", "window_requests", "share_cap", "loser_tokens",
        "loser_cost_usd")}, refused=dict(hedging["refused"]))


def _budget(budget: Mapping[str, Any] | None) -> BudgetState | None:
    if not budget or (budget.get("limit_usd") is None and budget.get("hour_limit_usd") is None):
        return None
    return BudgetState(**{name: budget.get(name) for name in (
        "policy", "spent_usd", "limit_usd", "hour_spent_usd", "hour_limit_usd", "reached",
        "refill_at", "refill_in_s")})


def _fallback(backend: str, failover: Mapping[str, Any]) -> str | None:
    # ``serving`` is the last backend a round went to: only news while a circuit is open
    # and it is not the selected backend.
    serving = failover.get("serving")
    if failover.get("open") and serving and serving != backend:
        return serving
    return None


def _failover_state(failover: Mapping[str, Any]) -> FailoverState:
    return FailoverState(
        fallbacks=tuple(failover.get("fallbacks") or ()),
        failovers=failover.get("failovers", 0),
        circuits=tuple(Circuit(backend=b, until=c.get("until"),
                               probing=bool(c.get("probing")), reason=c.get("reason", ""))
                       for b, c in sorted((failover.get("open") or {}).items())))


def count_columns(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The verdict statuses seen in ``counts``, in :data:`STATUS_ORDER`, then by name."""
    seen = {s for per in counts.values() for s in per}
    return [s for s in STATUS_ORDER if s in seen] + sorted(seen - set(STATUS_ORDER))


def _judge(name: str) -> str | None:
    return None if name == "default" else name


def shift_reports(status: Mapping[str, Any]) -> tuple[ShiftReport, ...]:
    """The latest switch's score shift, one per judge definition, by name."""
    return tuple(ShiftReport(judge=_judge(name), line=report["line"])
                 for name, report in sorted((status.get("shift") or {}).items()))


def calibrations(status: Mapping[str, Any]) -> tuple[CalibrationState, ...]:
    """What calibration does, one per judge definition that has it, by name."""
    return tuple(
        CalibrationState(judge=_judge(name), mode=c["mode"], reference=c["reference"],
                         maps=tuple((b, m["pairs"]) for b, m in sorted(c["maps"].items())),
                         min_pairs=c["min_pairs"])
        for name, c in sorted((status.get("calibration") or {}).items()))


def reward_servers(status: Mapping[str, Any]) -> tuple[RewardServer, ...]:
    """The running ``serve-rm`` processes, as announced."""
    return tuple(RewardServer(where=f"{rm['url']} (pid {rm['pid']} on {rm['node']})",
                              insecure=bool(rm["insecure"]), token=bool(rm["token"]))
                 for rm in status.get("reward_servers") or [])
