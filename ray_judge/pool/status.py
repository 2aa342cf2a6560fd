"""What ``judge.status()`` answers: one typed structure for the CLI, ``watch`` and tests.

A :class:`JudgeStatus` is a plain dict at run time (it crosses Ray, is printed as JSON by
``switch_judge_backend.py show --json`` and ``ray-judge status --json``, and older callers
index it by key), typed here so that every reader agrees on the keys and what they hold.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["JudgeStatus"]


class JudgeStatus(TypedDict):
    """The judge's state: backend and its source, load, counts, latency, cost, monitors."""

    #: the backend the override file and the default select (before failover)
    backend: str
    #: the backend new requests go to now (after failover); None before the first
    serving: str | None
    model: str
    source: str
    override_file: str
    override_problem: str | None
    override_warnings: list[str]
    in_flight: dict[str, int]
    queued: int
    workers: int
    switches: int
    #: the latest backend changes: {"at", "from", "to", "why"} each
    recent_switches: list[dict[str, Any]]
    failover: dict[str, Any]
    cache: dict[str, Any]
    groups: dict[str, Any]
    started_at: float
    uptime_s: float
    pid: int
    node_id: str | None
    #: judge name -> version
    judges: dict[str, str]
    limits: dict[str, int]
    shift: dict[str, Any]
    calibration: dict[str, Any]
    reservoir: dict[str, Any]
    reward_servers: list[dict[str, Any]]
    #: the spend budget (:meth:`~.budget.Budget.snapshot`): "policy", "spent_usd" and
    #: "limit_usd" (the run), "hour_spent_usd" and "hour_limit_usd", "reached" ("run",
    #: "hour" or None), "refill_at" / "refill_in_s", "held", "refused", "persistent"
    budget: dict[str, Any]
    validation: dict[str, Any] | None  # SwitchValidation.snapshot(); None: no cases file
    hedging: dict[str, Any]  # HedgeBudget.snapshot(): hedges sent, won, refused, their cost
    #: live canaries (:meth:`~ray_judge.quality.canaries.CanaryMonitor.snapshot`): "share",
    #: "sent", "judged", "passed", "failed", "pending", "dropped", "cost_usd" (apart from
    #: ``cost_usd`` below), "warnings" and "judges": judge -> backend -> kind -> {"text",
    #: "sent", "judged", "passed", "rate", "low", "high" (Wilson 95%), "warning"}
    canaries: dict[str, Any]
    #: judge -> backend -> {"n", "spearman", "quartiles", "warning", "line", ...}
    #: (:meth:`~ray_judge.quality.length_bias.LengthBias.snapshot`)
    length_bias: dict[str, Any]
    #: judge panels (:meth:`~.panels.Panels.snapshot`): per panel judge, its members,
    #: verdicts, escalation rate, each member's call and cost share, and agreement
    panels: dict[str, dict[str, Any]]
    # JudgeStats.snapshot()
    total: int
    counts: dict[str, dict[str, int]]
    latency_p50_s: float | None
    latency_p95_s: float | None
    cost_usd: float
    input_tokens: int
    output_tokens: int
    retries: int
    format_retries: int
    cached: int
    #: the providers' prompt caches (not ray_judge's verdict cache, ``cache``), per
    #: backend, over calls that reported them: {"input_tokens", "read_tokens",
    #: "write_tokens", "hit_ratio": read / input tokens}
    prompt_cache: dict[str, dict[str, Any]]
