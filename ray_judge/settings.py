"""Every environment variable ray_judge reads, in one table.

:data:`SETTINGS` yields the variable list (:data:`ray_judge.config.ENV_VARS`), the parsing
that :meth:`ray_judge.config.JudgeConfig.from_env` does, and ``docs/configuration.md``
(:mod:`ray_judge.configuration_page`)::

    python -m ray_judge.configuration_page > docs/configuration.md

A row names the variable, the :class:`~ray_judge.config.JudgeConfig` field it fills, the
function that parses its text, the default as users read it, and what it means. An unset
or blank variable leaves the field's own default (the dataclass's), so a config built in
code and one read from an empty environment are the same. This module is a core value:
it imports only the errors and the backend spec.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .spec import DEFAULT_SPEC, BackendSpec, parse_ccode_model_overrides

__all__ = ["BUDGET_POLICIES", "CALIBRATIONS", "CCODE_MODES", "LITELLM_TRANSPORTS", "SETTINGS",
           "Setting", "SpendLimits", "read"]

#: How the ccode backend runs the CLI (``LLM_JUDGE_CCODE_MODE``).
CCODE_MODES = ("session", "oneshot")
#: How the LiteLLM backend sends its calls (``LLM_JUDGE_LITELLM_TRANSPORT``).
LITELLM_TRANSPORTS = ("lean", "litellm")
#: Calibration of scores after a backend switch (``LLM_JUDGE_CALIBRATE``).
CALIBRATIONS = ("none", "quantile")
#: What happens when a spend limit is reached (``LLM_JUDGE_BUDGET_POLICY``).
BUDGET_POLICIES = ("fallback", "wait", "fail")

#: ``parse(text, base)``: ``text`` is the stripped, non-blank value, ``base`` the directory
#: relative paths are read against. Raise ``ValueError("must be ...")`` for a bad value
#: (the variable's name and the value are added), or a :class:`ConfigError`.
Parse = Callable[[str, Path], Any]


@dataclass(frozen=True)
class Setting:
    """One environment variable: where it goes, how it is read, what it means."""

    env: str
    field: str
    parse: Parse
    default: str  # as the docs show it (Markdown)
    help: str  # Markdown
    #: text parsed when the variable is unset or blank (``None``: the field's default)
    unset: str | None = None


def number(low: float) -> Parse:
    return lambda text, _base: _bounded(float, "a number", text, low)


def integer(low: int) -> Parse:
    return lambda text, _base: _bounded(int, "an integer", text, low)


def _bounded(kind: type, what: str, text: str, low: float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"must be {what}") from None
    if not (math.isfinite(value) and value >= low):
        raise ValueError(f"must be >= {low} and finite")
    return value


def share(text: str, _base: Path) -> float:
    value = _bounded(float, "a number", text, 0.0)
    if not 0.0 < value <= 1.0:
        raise ValueError("must be within (0, 1]")
    return value


def fraction(text: str, _base: Path) -> float:
    value = _bounded(float, "a number", text, 0.0)
    if value > 1.0:
        raise ValueError("must be within [0, 1]")
    return value


def choice(choices: tuple[str, ...]) -> Parse:
    def parse(text: str, _base: Path) -> str:
        if text.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text.lower()
    return parse


def on_off(text: str, _base: Path) -> bool:
    if text.lower() not in ("on", "off"):
        raise ValueError("must be on or off")
    return text.lower() == "on"


def bounds(text: str, _base: Path) -> str:
    """``METRIC>=VALUE,...``: the shape here; the figures' names where they are known
    (:mod:`ray_judge.quality.gate`, when the judge starts)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(_BOUND.match(part) for part in parts):
        raise ValueError("must be bounds such as spearman>=0.6,in_range>=0.8")
    return ",".join(parts)


_BOUND = re.compile(r"^[A-Za-z_0-9]+\s*(>=|<=|=)\s*-?[0-9.]+(e-?[0-9]+)?$")


def spec(text: str, _base: Path) -> BackendSpec:
    return BackendSpec.parse(text)


def specs(text: str, _base: Path) -> tuple[BackendSpec, ...]:
    return tuple(BackendSpec.parse(part) for part in text.split(",") if part.strip())


def path(text: str, base: Path) -> Path:
    found = Path(os.path.expanduser(text))
    return found if found.is_absolute() else base / found


def normal_path(text: str, base: Path) -> Path:
    """:func:`path` without ``.`` and ``..``: the override file is shown and compared."""
    return Path(os.path.normpath(path(text, base)))


def plain(text: str, _base: Path) -> str:
    return text


@dataclass(frozen=True)
class SpendLimits:
    """``LLM_JUDGE_BUDGET_USD``: US dollars for the whole run and per rolling hour (None:
    no such limit)."""

    run: float | None = None
    hourly: float | None = None

    def __str__(self) -> str:
        parts = ([] if self.hourly is None else [f"{self.hourly:g}/h"]) + (
            [] if self.run is None else [f"{self.run:g}"])
        return ",".join(parts) or "none"


def spend_limits(text: str, _base: Path) -> SpendLimits:
    """``"500"`` (the run), ``"20/h"`` (a rolling hour) or both: ``"20/h,500"``."""
    found: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        which, number = ("hourly", part[:-2]) if part.lower().endswith("/h") else ("run", part)
        try:
            value = float(number)
        except ValueError:
            raise ValueError("must be US dollars for the run and/or per hour, such as "
                             "500, 20/h or 20/h,500") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must hold limits > 0, such as 500, 20/h or 20/h,500")
        if which in found:
            raise ValueError(f"must give the {'hourly' if which == 'hourly' else 'run'} "
                             "limit once")
        found[which] = value
    return SpendLimits(**found)


def ccode_models(value: str, _base: Path) -> Mapping[str, str]:
    return parse_ccode_model_overrides(value)


_NO_LIMIT = "0 (no limit)"

#: Every setting, in the order the docs list them.
SETTINGS: tuple[Setting, ...] = (
    Setting("CLAUDE_CLI_PATH", "claude_cli_path", plain, "`claude` on PATH",
            "Claude Code CLI executable"),
    Setting("LLM_JUDGE_NAME", "default_spec", spec, f"`{DEFAULT_SPEC}`",
            "backend used when no override file exists"),
    Setting("LLM_JUDGE_BACKEND_FILE", "backend_file", normal_path, "`./.judge_backend`",
            "the override file (made absolute at start)", unset=".judge_backend"),
    Setting("LLM_JUDGE_BACKEND_TTL", "ttl_s", number(0.0), "5",
            "seconds between reads of the override file"),
    Setting("LLM_JUDGE_CCODE_MODEL", "ccode_models", ccode_models, "built-in ids",
            "model id for ccode aliases: `ID` for all, or "
            "`ccode-4-sonnet=ID,ccode-4-opus=ID`"),
    Setting("LLM_JUDGE_RUBRIC_FILE", "rubric_file", path, "built-in rubric",
            "judging instructions template"),
    Setting("LLM_JUDGE_JUDGES_FILE", "judges_file", path, "unset (only `default`)",
            "TOML file of named judge definitions (read at start; a bad file fails start-up)"),
    Setting("LLM_JUDGE_SCORE_MAX", "score_max", number(1.0), "10",
            "top of the `SCORE: N` scale; scores are divided by it"),
    Setting("LLM_JUDGE_MAX_INPUT_CHARS", "max_input_chars", integer(100), "20000",
            "longest prompt/response/reference sent (truncated)"),
    Setting("LLM_JUDGE_MAX_TOKENS", "max_tokens", integer(16), "1024",
            "max output tokens per verdict (LiteLLM)"),
    Setting("LLM_JUDGE_TIMEOUT", "timeout_s", number(0.1), "120",
            "seconds for one attempt (process killed / request cancelled)"),
    Setting("LLM_JUDGE_DEADLINE", "deadline_s", number(0.1), "300",
            "seconds for one request, all retries included"),
    Setting("LLM_JUDGE_MAX_ATTEMPTS", "max_attempts", integer(1), "4",
            "attempts per request (1 = no retry)"),
    Setting("LLM_JUDGE_BACKOFF", "backoff_s", number(0.0), "1",
            "base seconds of exponential backoff with full jitter"),
    Setting("LLM_JUDGE_MAX_BACKOFF", "max_backoff_s", number(0.0), "60",
            "longest wait between attempts"),
    Setting("LLM_JUDGE_NUM_WORKERS", "num_workers", integer(1), "CPUs of the node (2..8)",
            "worker actors running backend calls"),
    Setting("LLM_JUDGE_MAX_IN_FLIGHT_CCODE", "max_in_flight_ccode", integer(1), "2 x CPUs",
            "cluster-wide concurrent `claude` calls"),
    Setting("LLM_JUDGE_CCODE_MODE", "ccode_mode", choice(CCODE_MODES), "`session`",
            "`session`: long-lived `claude` processes, a fresh context per verdict; "
            "`oneshot`: one `claude -p` per verdict"),
    Setting("LLM_JUDGE_CCODE_SESSIONS", "ccode_sessions", integer(0), "in-flight share",
            "`claude` sessions per worker (default: max in flight / workers, rounded up)"),
    Setting("LLM_JUDGE_CCODE_SESSION_ITEMS", "ccode_session_items", integer(1), "500",
            "verdicts a `claude` session serves before it is replaced"),
    Setting("LLM_JUDGE_CCODE_SESSION_IDLE", "ccode_session_idle_s", number(0.0), "60",
            "seconds an unused `claude` session is kept (0: no limit)"),
    Setting("LLM_JUDGE_MAX_IN_FLIGHT_LITELLM", "max_in_flight_litellm", integer(1), "256",
            "cluster-wide concurrent LiteLLM calls"),
    Setting("LLM_JUDGE_LITELLM_TRANSPORT", "litellm_transport", choice(LITELLM_TRANSPORTS),
            "lean",
            "`lean`: OpenAI-compatible and Anthropic calls go out over one aiohttp session "
            "per worker, everything else through `litellm.acompletion`; `litellm`: "
            "everything through `litellm.acompletion`"),
    Setting("LLM_JUDGE_PROMPT_CACHE", "prompt_cache", on_off, "`on`",
            "`on`: requests to Claude through LiteLLM (`anthropic/`, and Claude on "
            "`bedrock/` and `vertex_ai/`) mark the system prompt and the part of the user "
            "message shared by every response to a task as cacheable "
            "(`cache_control` breakpoints), each when it is long enough for the model to "
            "cache; `off`: no breakpoints. See [Cost](cost.md)"),
    Setting("LLM_JUDGE_WORKER_CPUS", "worker_cpus", number(0.0), "0",
            "CPUs each worker actor reserves from Ray"),
    Setting("LLM_JUDGE_GC_THRESHOLD", "gc_threshold", integer(0), "50000",
            "young-generation threshold of Python's cyclic garbage collector in the judge "
            "and worker processes, which also freeze what they hold after start-up "
            "(0: Python's defaults)"),
    Setting("LLM_JUDGE_FALLBACK", "fallback", specs, "none",
            "comma-separated specs to fail over to, in order"),
    Setting("LLM_JUDGE_BUDGET_USD", "budget_usd", spend_limits, "unset (no limit)",
            "spend limit in US dollars of billed backends: for the run (`500`), per rolling "
            "hour (`20/h`) or both (`20/h,500`); see [Spend budgets](cost.md#spend-budgets)"),
    Setting("LLM_JUDGE_BUDGET_POLICY", "budget_policy", choice(BUDGET_POLICIES),
            "`fallback`", "when a spend limit is reached: `fallback` to the next backend "
            "that is not billed, `wait` for the hour to refill, or `fail` as "
            "`budget_exhausted`"),
    Setting("LLM_JUDGE_FAILOVER_RATE_LIMITED", "failover_rate_limited", integer(0), "20",
            "`rate_limited` requests in a row (retries spent) that trigger a failover"),
    Setting("LLM_JUDGE_PROBE_INTERVAL", "probe_interval_s", number(0.1), "60",
            "seconds before a failed-over backend is probed again (doubles, up to 15 min)"),
    Setting("LLM_JUDGE_HEDGE", "hedge", on_off, "`on`",
            "`on`: a judge call that runs longer than the hedge delay gets a second, "
            "identical call, the first ok answer wins and the other is cancelled; `off`: "
            "never. See [Tail latency](tail-latency.md)"),
    Setting("LLM_JUDGE_HEDGE_AFTER", "hedge_after_s", number(0.0), "adaptive",
            "seconds after which a call is hedged; unset: 1.5 x the 90th percentile of "
            "the judge's recent call latency on that backend, once 20 calls have "
            "answered, never below `LLM_JUDGE_HEDGE_MIN_DELAY`"),
    Setting("LLM_JUDGE_HEDGE_MIN_DELAY", "hedge_min_delay_s", number(0.0), "0.5",
            "the adaptive hedge delay's floor, in seconds"),
    Setting("LLM_JUDGE_HEDGE_SHARE", "hedge_share", share, "0.05",
            "most hedged calls as a share of the requests dispatched in the last minute"),
    Setting("LLM_JUDGE_HEDGE_TO", "hedge_to", spec, "unset (the same backend)",
            "a backend spec the hedged call goes to instead, e.g. a faster model"),
    Setting("LLM_JUDGE_RPM_CCODE", "rpm_ccode", number(0.0), _NO_LIMIT,
            "cluster-wide `claude` requests per minute"),
    Setting("LLM_JUDGE_RPM_LITELLM", "rpm_litellm", number(0.0), _NO_LIMIT,
            "cluster-wide LiteLLM requests per minute"),
    Setting("LLM_JUDGE_TPM_CCODE", "tpm_ccode", number(0.0), _NO_LIMIT,
            "cluster-wide `claude` tokens per minute"),
    Setting("LLM_JUDGE_TPM_LITELLM", "tpm_litellm", number(0.0), _NO_LIMIT,
            "cluster-wide LiteLLM tokens per minute"),
    Setting("LLM_JUDGE_CACHE_SIZE", "cache_size", integer(0), "100000",
            "verdicts kept in memory (0 turns the cache off)"),
    Setting("LLM_JUDGE_CACHE_PATH", "cache_path", path, "unset (memory only)",
            "SQLite file that keeps verdicts across restarts"),
    Setting("LLM_JUDGE_RESERVOIR_SIZE", "reservoir_size", integer(0), "300",
            "requests per judge kept (uniform sample) to re-judge after a switch (0: off)"),
    Setting("LLM_JUDGE_PANEL_WINDOW", "panel_window", integer(2), "1000",
            "latest verdicts per panel judge that its agreement statistics are computed "
            "over (see [Judge panels](panels.md))"),
    Setting("LLM_JUDGE_SHIFT_SHARE", "shift_share", share, "0.1",
            "share of the new backend's in-flight limit the re-judging may use"),
    Setting("LLM_JUDGE_SHIFT_WARN", "shift_warn", number(0.0), "0.1",
            "mean score shift after a switch that is logged as WARNING"),
    Setting("LLM_JUDGE_CALIBRATE", "calibrate", choice(CALIBRATIONS), "none",
            "`quantile`: map the default judge's scores onto the reference backend's "
            "(other judges: `calibrate` in their definition)"),
    Setting("LLM_JUDGE_CALIBRATION_MIN_PAIRS", "calibration_min_pairs", integer(1), "100",
            "re-judged pairs needed before calibrating"),
    Setting("LLM_JUDGE_CALIBRATION_REFERENCE", "calibration_reference", spec,
            "first backend of the run", "backend whose score scale calibration maps onto"),
    Setting("LLM_JUDGE_VALIDATION_FILE", "validation_file", path, "unset (no validation)",
            "a labelled cases file (as `ray-judge eval` reads): every change of the serving "
            "backend validates the new one on it, on spare capacity; see "
            "[Evaluating a judge](eval.md#validation-on-every-switch)"),
    Setting("LLM_JUDGE_VALIDATION_GATE", "validation_gate", bounds, "unset (no gate)",
            "bounds such as `spearman>=0.6,in_range>=0.8`: a switch by a person or the "
            "override file waits until the new backend meets them, and is refused when it "
            "falls short (a failover proceeds, flagged)"),
    Setting("LLM_JUDGE_CANARY_SHARE", "canary_share", fraction, "0.01",
            "share of requests (pointwise, and group calls) copied with a known-bad answer "
            "and judged in the background on spare capacity (0: off); see [Trust](trust.md)"),
    Setting("LLM_JUDGE_CANARY_PASS", "canary_pass", fraction, "0.2",
            "a canary whose score (on [0, 1]) is above this fooled the judge: the bottom "
            "fifth of the judge's scale"),
    Setting("LLM_JUDGE_CANARY_WARN", "canary_warn", fraction, "0.05",
            "Wilson 95% lower bound of a canary kind's pass rate that is logged as WARNING"),
    Setting("LLM_JUDGE_LENGTH_BIAS_WINDOW", "length_bias_window", integer(0), "1000",
            "latest ok verdicts per judge and backend in which length and score are "
            "correlated (0: off)"),
    Setting("LLM_JUDGE_LENGTH_BIAS_WARN", "length_bias_warn", number(-1.0), "0.3",
            "Spearman correlation of response length and score that is logged as WARNING"),
    Setting("LLM_JUDGE_LENGTH_BIAS_MIN", "length_bias_min", integer(2), "200",
            "verdicts in the window before a length-bias WARNING may come"),
    Setting("LLM_JUDGE_ACTOR_NAME", "actor_name", plain, "`judge`",
            "name of the singleton actor"),
    Setting("LLM_JUDGE_NAMESPACE", "namespace", plain, "`ray_judge`",
            "Ray namespace of the singleton (launch.sh also exports it as `RAY_NAMESPACE`)"),
)


def read(environ: Mapping[str, str], base: Path) -> dict[str, Any]:
    """The fields that ``environ`` sets, parsed: ``{field: value}``.

    Raises:
        ConfigError: a value does not parse; ``name`` is the variable, ``value`` its text.
    """
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env, "")
        stripped = raw.strip() or setting.unset
        if stripped is None:
            continue
        try:
            values[setting.field] = setting.parse(stripped, base)
        except ConfigError as exc:
            if getattr(exc, "name", None) == setting.env:
                raise
            raise ConfigError(f"{setting.env}: {exc}", name=setting.env, value=raw) from None
        except ValueError as exc:
            raise ConfigError(f"{setting.env} {exc}, got {raw!r}", name=setting.env,
                              value=raw) from None
    return values
