"""All of ray_judge's configuration, read from the environment in one place.

Other modules take a :class:`JudgeConfig`; none of them reads ``os.environ`` for settings.
Every variable is listed in :data:`ENV_VARS` (the README's table is generated from the
same words).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .spec import DEFAULT_SPEC, BackendSpec, parse_ccode_model_overrides

__all__ = ["CALIBRATIONS", "CCODE_MODES", "ENV_VARS", "LITELLM_TRANSPORTS", "JudgeConfig",
           "forwarded_env", "is_secret_name"]

#: name -> (default shown to users, meaning)
ENV_VARS: dict[str, tuple[str, str]] = {
    "CLAUDE_CLI_PATH": ("`claude` on PATH", "Claude Code CLI executable"),
    "LLM_JUDGE_NAME": (DEFAULT_SPEC, "backend used when no override file exists"),
    "LLM_JUDGE_BACKEND_FILE": ("./.judge_backend", "the override file (made absolute at start)"),
    "LLM_JUDGE_BACKEND_TTL": ("5", "seconds between reads of the override file"),
    "LLM_JUDGE_CCODE_MODEL": (
        "built-in ids",
        "model id for ccode aliases: `ID` for all, or `ccode-4-sonnet=ID,ccode-4-opus=ID`",
    ),
    "LLM_JUDGE_RUBRIC_FILE": ("built-in rubric", "judging instructions template"),
    "LLM_JUDGE_JUDGES_FILE": (
        "unset (only `default`)",
        "TOML file of named judge definitions (read at start; a bad file fails start-up)"),
    "LLM_JUDGE_SCORE_MAX": ("10", "top of the `SCORE: N` scale; scores are divided by it"),
    "LLM_JUDGE_MAX_INPUT_CHARS": ("20000", "longest prompt/response/reference sent (truncated)"),
    "LLM_JUDGE_MAX_TOKENS": ("1024", "max output tokens per verdict (LiteLLM)"),
    "LLM_JUDGE_TIMEOUT": ("120", "seconds for one attempt (process killed / request cancelled)"),
    "LLM_JUDGE_DEADLINE": ("300", "seconds for one request, all retries included"),
    "LLM_JUDGE_MAX_ATTEMPTS": ("4", "attempts per request (1 = no retry)"),
    "LLM_JUDGE_BACKOFF": ("1", "base seconds of exponential backoff with full jitter"),
    "LLM_JUDGE_MAX_BACKOFF": ("60", "longest wait between attempts"),
    "LLM_JUDGE_NUM_WORKERS": ("CPUs of the node (2..8)", "worker actors running backend calls"),
    "LLM_JUDGE_MAX_IN_FLIGHT_CCODE": ("2 x CPUs", "cluster-wide concurrent `claude` calls"),
    "LLM_JUDGE_CCODE_MODE": (
        "session",
        "`session`: long-lived `claude` processes, a fresh context per verdict; "
        "`oneshot`: one `claude -p` per verdict"),
    "LLM_JUDGE_CCODE_SESSIONS": (
        "in-flight share",
        "`claude` sessions per worker (default: max in flight / workers, rounded up)"),
    "LLM_JUDGE_CCODE_SESSION_ITEMS": (
        "500", "verdicts a `claude` session serves before it is replaced"),
    "LLM_JUDGE_CCODE_SESSION_IDLE": (
        "60", "seconds an unused `claude` session is kept (0: no limit)"),
    "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM": ("256", "cluster-wide concurrent LiteLLM calls"),
    "LLM_JUDGE_LITELLM_TRANSPORT": (
        "lean",
        "`lean`: OpenAI-compatible and Anthropic calls go out over one aiohttp session per "
        "worker, everything else through `litellm.acompletion`; `litellm`: everything "
        "through `litellm.acompletion`"),
    "LLM_JUDGE_WORKER_CPUS": ("0", "CPUs each worker actor reserves from Ray"),
    "LLM_JUDGE_FALLBACK": ("none", "comma-separated specs to fail over to, in order"),
    "LLM_JUDGE_FAILOVER_RATE_LIMITED": (
        "20", "rate_limited requests in a row (retries spent) that trigger a failover"),
    "LLM_JUDGE_PROBE_INTERVAL": ("60", "seconds before a failed-over backend is probed again"),
    "LLM_JUDGE_RPM_CCODE": ("0 (no limit)", "cluster-wide `claude` requests per minute"),
    "LLM_JUDGE_RPM_LITELLM": ("0 (no limit)", "cluster-wide LiteLLM requests per minute"),
    "LLM_JUDGE_TPM_CCODE": ("0 (no limit)", "cluster-wide `claude` tokens per minute"),
    "LLM_JUDGE_TPM_LITELLM": ("0 (no limit)", "cluster-wide LiteLLM tokens per minute"),
    "LLM_JUDGE_CACHE_SIZE": ("100000", "verdicts kept in memory (0 turns the cache off)"),
    "LLM_JUDGE_CACHE_PATH": (
        "unset (memory only)", "SQLite file that keeps verdicts across restarts"),
    "LLM_JUDGE_RESERVOIR_SIZE": (
        "300", "requests per judge kept (uniform sample) to re-judge after a switch (0: off)"),
    "LLM_JUDGE_SHIFT_SHARE": (
        "0.1", "share of the new backend's in-flight limit the re-judging may use"),
    "LLM_JUDGE_SHIFT_WARN": ("0.1", "mean score shift after a switch that is logged as WARNING"),
    "LLM_JUDGE_CALIBRATE": (
        "none", "`quantile`: map the default judge's scores onto the reference backend's "
        "(other judges: `calibrate` in their definition)"),
    "LLM_JUDGE_CALIBRATION_MIN_PAIRS": ("100", "re-judged pairs needed before calibrating"),
    "LLM_JUDGE_CALIBRATION_REFERENCE": (
        "first backend of the run", "backend whose score scale calibration maps onto"),
    "LLM_JUDGE_ACTOR_NAME": ("judge", "name of the singleton actor"),
    "LLM_JUDGE_NAMESPACE": ("ray_judge", "Ray namespace of the singleton"),
}

#: How the ccode backend runs the CLI (``LLM_JUDGE_CCODE_MODE``).
CCODE_MODES = ("session", "oneshot")
#: How the LiteLLM backend sends its calls (``LLM_JUDGE_LITELLM_TRANSPORT``).
LITELLM_TRANSPORTS = ("lean", "litellm")
#: Calibration of scores after a backend switch (``LLM_JUDGE_CALIBRATE``).
CALIBRATIONS = ("none", "quantile")

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH)", re.IGNORECASE)
# What a judge and its workers need from the environment of whoever starts them.
_FORWARD = re.compile(
    r"^(CLAUDE_|ANTHROPIC_|LLM_JUDGE_|LITELLM_|OPENAI_|AZURE_|GEMINI_|GOOGLE_|VERTEX|"
    r"MISTRAL_|COHERE_|GROQ_|TOGETHER|DEEPSEEK_|XAI_|OPENROUTER_|FIREWORKS|HOSTED_VLLM_|"
    r"VLLM_API|OLLAMA_|HF_TOKEN|HUGGINGFACE_|AWS_|BEDROCK_|DISABLE_|HTTPS?_PROXY|NO_PROXY|"
    r"https?_proxy|no_proxy|SSL_CERT_|REQUESTS_CA_BUNDLE)"
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of ``environ`` that the judge and its workers must see."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if _FORWARD.match(k)}


def _number(environ: Mapping[str, str], name: str, default: float, *, low: float,
            integer: bool = False) -> Any:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return int(default) if integer else float(default)
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}", name=name, value=raw) from None
    if not (math.isfinite(value) and value >= low):
        raise ConfigError(f"{name} must be >= {low} and finite, got {raw!r}", name=name, value=raw)
    return value


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...],
            default: str) -> str:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}",
                          name=name, value=raw)
    return raw.lower()


def _share(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _number(environ, name, default, low=0.0)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name} must be within (0, 1], got {environ.get(name)!r}",
                          name=name, value=environ.get(name))
    return value


def _spec_or_none(environ: Mapping[str, str], name: str) -> BackendSpec | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return BackendSpec.parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}", name=name, value=raw) from None


def _fallback(raw: str) -> tuple[BackendSpec, ...]:
    specs = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            specs.append(BackendSpec.parse(part))
        except ConfigError as exc:
            raise ConfigError(f"LLM_JUDGE_FALLBACK: {exc}", name="LLM_JUDGE_FALLBACK",
                              value=raw) from None
    return tuple(specs)


def _path(raw: str, base: Path) -> Path | None:
    if not raw.strip():
        return None
    path = Path(os.path.expanduser(raw.strip()))
    return path if path.is_absolute() else base / path


def _default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True)
class JudgeConfig:
    """Settings of a judge; :meth:`from_env` is the only place the environment is read."""

    default_spec: BackendSpec = field(default_factory=lambda: BackendSpec.parse(DEFAULT_SPEC))
    default_source: str = "default"  # "env" when LLM_JUDGE_NAME set it
    backend_file: Path = field(default_factory=lambda: Path(".judge_backend").absolute())
    ttl_s: float = 5.0
    claude_cli_path: str = "claude"
    ccode_models: Mapping[str, str] = field(default_factory=dict)
    rubric_file: Path | None = None
    judges_file: Path | None = None
    score_max: float = 10.0
    max_input_chars: int = 20_000
    max_tokens: int = 1024
    timeout_s: float = 120.0
    deadline_s: float = 300.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    num_workers: int = field(default_factory=_default_workers)
    max_in_flight_ccode: int = field(default_factory=lambda: 2 * (os.cpu_count() or 2))
    max_in_flight_litellm: int = 256
    litellm_transport: str = "lean"
    ccode_mode: str = "session"
    ccode_sessions: int = 0  # 0: the worker's share of max_in_flight_ccode
    ccode_session_items: int = 500
    ccode_session_idle_s: float = 60.0
    worker_cpus: float = 0.0
    fallback: tuple[BackendSpec, ...] = ()
    failover_rate_limited: int = 20
    probe_interval_s: float = 60.0
    rpm_ccode: float = 0.0
    rpm_litellm: float = 0.0
    tpm_ccode: float = 0.0
    tpm_litellm: float = 0.0
    cache_size: int = 100_000
    cache_path: Path | None = None
    reservoir_size: int = 300
    gc_threshold: int = 50_000
    shift_share: float = 0.1
    shift_warn: float = 0.1
    calibrate: str = "none"
    calibration_min_pairs: int = 100
    calibration_reference: BackendSpec | None = None
    actor_name: str = "judge"
    namespace: str = "ray_judge"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 cwd: Path | None = None) -> JudgeConfig:
        """Read every ``LLM_JUDGE_*`` variable; raise :class:`ConfigError` naming a bad one."""
        env = os.environ if environ is None else environ
        base = Path.cwd() if cwd is None else cwd
        name = env.get("LLM_JUDGE_NAME", "").strip()
        if name:
            try:
                default_spec = BackendSpec.parse(name)
            except ConfigError as exc:
                raise ConfigError(f"LLM_JUDGE_NAME: {exc}", name="LLM_JUDGE_NAME",
                                  value=name) from None
        else:
            default_spec = BackendSpec.parse(DEFAULT_SPEC)
        file_raw = env.get("LLM_JUDGE_BACKEND_FILE", "").strip() or ".judge_backend"
        backend_file = Path(os.path.expanduser(file_raw))
        if not backend_file.is_absolute():
            backend_file = base / backend_file
        rubric_file = _path(env.get("LLM_JUDGE_RUBRIC_FILE", ""), base)
        workers = env.get("LLM_JUDGE_NUM_WORKERS", "").strip()
        in_flight_ccode = env.get("LLM_JUDGE_MAX_IN_FLIGHT_CCODE", "").strip()
        config = cls(
            default_spec=default_spec,
            default_source="env" if name else "default",
            backend_file=Path(os.path.normpath(backend_file)),
            ttl_s=_number(env, "LLM_JUDGE_BACKEND_TTL", 5.0, low=0.0),
            claude_cli_path=env.get("CLAUDE_CLI_PATH", "").strip() or "claude",
            ccode_models=parse_ccode_model_overrides(env.get("LLM_JUDGE_CCODE_MODEL")),
            rubric_file=rubric_file,
            judges_file=_path(env.get("LLM_JUDGE_JUDGES_FILE", ""), base),
            score_max=_number(env, "LLM_JUDGE_SCORE_MAX", 10.0, low=1.0),
            max_input_chars=_number(env, "LLM_JUDGE_MAX_INPUT_CHARS", 20_000, low=100,
                                    integer=True),
            max_tokens=_number(env, "LLM_JUDGE_MAX_TOKENS", 1024, low=16, integer=True),
            timeout_s=_number(env, "LLM_JUDGE_TIMEOUT", 120.0, low=0.1),
            deadline_s=_number(env, "LLM_JUDGE_DEADLINE", 300.0, low=0.1),
            max_attempts=_number(env, "LLM_JUDGE_MAX_ATTEMPTS", 4, low=1, integer=True),
            backoff_s=_number(env, "LLM_JUDGE_BACKOFF", 1.0, low=0.0),
            max_backoff_s=_number(env, "LLM_JUDGE_MAX_BACKOFF", 60.0, low=0.0),
            num_workers=(_number(env, "LLM_JUDGE_NUM_WORKERS", 0, low=1, integer=True)
                         if workers else _default_workers()),
            max_in_flight_ccode=(
                _number(env, "LLM_JUDGE_MAX_IN_FLIGHT_CCODE", 0, low=1, integer=True)
                if in_flight_ccode else 2 * (os.cpu_count() or 2)),
            max_in_flight_litellm=_number(env, "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM", 256, low=1,
                                          integer=True),
            litellm_transport=_choice(env, "LLM_JUDGE_LITELLM_TRANSPORT", LITELLM_TRANSPORTS,
                                      "lean"),
            ccode_mode=_choice(env, "LLM_JUDGE_CCODE_MODE", CCODE_MODES, "session"),
            ccode_sessions=_number(env, "LLM_JUDGE_CCODE_SESSIONS", 0, low=0, integer=True),
            ccode_session_items=_number(env, "LLM_JUDGE_CCODE_SESSION_ITEMS", 500, low=1,
                                        integer=True),
            ccode_session_idle_s=_number(env, "LLM_JUDGE_CCODE_SESSION_IDLE", 60.0, low=0.0),
            worker_cpus=_number(env, "LLM_JUDGE_WORKER_CPUS", 0.0, low=0.0),
            fallback=_fallback(env.get("LLM_JUDGE_FALLBACK", "")),
            failover_rate_limited=_number(env, "LLM_JUDGE_FAILOVER_RATE_LIMITED", 20, low=0,
                                          integer=True),
            probe_interval_s=_number(env, "LLM_JUDGE_PROBE_INTERVAL", 60.0, low=0.1),
            rpm_ccode=_number(env, "LLM_JUDGE_RPM_CCODE", 0.0, low=0.0),
            rpm_litellm=_number(env, "LLM_JUDGE_RPM_LITELLM", 0.0, low=0.0),
            tpm_ccode=_number(env, "LLM_JUDGE_TPM_CCODE", 0.0, low=0.0),
            tpm_litellm=_number(env, "LLM_JUDGE_TPM_LITELLM", 0.0, low=0.0),
            cache_size=_number(env, "LLM_JUDGE_CACHE_SIZE", 100_000, low=0, integer=True),
            cache_path=_path(env.get("LLM_JUDGE_CACHE_PATH", ""), base),
            reservoir_size=_number(env, "LLM_JUDGE_RESERVOIR_SIZE", 300, low=0, integer=True),
            gc_threshold=_number(env, "LLM_JUDGE_GC_THRESHOLD", 50_000, low=0, integer=True),
            shift_share=_share(env, "LLM_JUDGE_SHIFT_SHARE", 0.1),
            shift_warn=_number(env, "LLM_JUDGE_SHIFT_WARN", 0.1, low=0.0),
            calibrate=_choice(env, "LLM_JUDGE_CALIBRATE", CALIBRATIONS, "none"),
            calibration_min_pairs=_number(env, "LLM_JUDGE_CALIBRATION_MIN_PAIRS", 100, low=1,
                                          integer=True),
            calibration_reference=_spec_or_none(env, "LLM_JUDGE_CALIBRATION_REFERENCE"),
            actor_name=env.get("LLM_JUDGE_ACTOR_NAME", "").strip() or "judge",
            namespace=env.get("LLM_JUDGE_NAMESPACE", "").strip() or "ray_judge",
        )
        return config

    def ccode_sessions_per_worker(self) -> int:
        """``ccode_sessions``, or this worker's share of the global ccode in-flight limit."""
        if self.ccode_sessions > 0:
            return self.ccode_sessions
        return max(1, math.ceil(self.max_in_flight_ccode / max(1, self.num_workers)))

    def max_in_flight(self, spec: BackendSpec) -> int:
        return self.max_in_flight_ccode if spec.kind == "ccode" else self.max_in_flight_litellm

    def rpm(self, spec: BackendSpec) -> float:
        return self.rpm_ccode if spec.kind == "ccode" else self.rpm_litellm

    def tpm(self, spec: BackendSpec) -> float:
        return self.tpm_ccode if spec.kind == "ccode" else self.tpm_litellm
