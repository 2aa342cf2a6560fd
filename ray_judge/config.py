"""All of ray_judge's configuration, read from the environment in one place.

Other modules take a :class:`JudgeConfig`; none of them reads ``os.environ`` for settings.
Which variable fills which field, how it is parsed and what it means is one table,
:data:`ray_judge.settings.SETTINGS` (``docs/configuration.md`` is generated from it).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .settings import CALIBRATIONS, CCODE_MODES, LITELLM_TRANSPORTS, SETTINGS, SpendLimits, read
from .spec import DEFAULT_SPEC, BackendSpec

__all__ = ["CALIBRATIONS", "CCODE_MODES", "ENV_VARS", "LITELLM_TRANSPORTS", "JudgeConfig",
           "forwarded_env", "is_secret_name"]

#: name -> (default shown to users, meaning), from :data:`~ray_judge.settings.SETTINGS`
ENV_VARS: dict[str, tuple[str, str]] = {s.env: (s.default, s.help) for s in SETTINGS}

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
    prompt_cache: bool = True
    ccode_mode: str = "session"
    ccode_sessions: int = 0  # 0: the worker's share of max_in_flight_ccode
    ccode_session_items: int = 500
    ccode_session_idle_s: float = 60.0
    worker_cpus: float = 0.0
    fallback: tuple[BackendSpec, ...] = ()
    failover_rate_limited: int = 20
    budget_usd: SpendLimits = field(default_factory=SpendLimits)
    budget_policy: str = "fallback"
    probe_interval_s: float = 60.0
    hedge: bool = True
    hedge_after_s: float | None = None  # None: adaptive (a multiple of recent latency)
    hedge_min_delay_s: float = 0.5
    hedge_share: float = 0.05
    hedge_to: BackendSpec | None = None  # None: the same backend
    rpm_ccode: float = 0.0
    rpm_litellm: float = 0.0
    tpm_ccode: float = 0.0
    tpm_litellm: float = 0.0
    cache_size: int = 100_000
    cache_path: Path | None = None
    reservoir_size: int = 300
    panel_window: int = 1000
    gc_threshold: int = 50_000
    shift_share: float = 0.1
    shift_warn: float = 0.1
    calibrate: str = "none"
    calibration_min_pairs: int = 100
    calibration_reference: BackendSpec | None = None
    validation_file: Path | None = None
    validation_gate: str | None = None  # bounds, checked against the eval's figures
    canary_share: float = 0.01
    canary_pass: float = 0.2
    canary_warn: float = 0.05
    length_bias_window: int = 1000
    length_bias_warn: float = 0.3
    length_bias_min: int = 200
    actor_name: str = "judge"
    namespace: str = "ray_judge"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 cwd: Path | None = None) -> JudgeConfig:
        """Read every ``LLM_JUDGE_*`` variable; raise :class:`ConfigError` naming a bad one."""
        env = os.environ if environ is None else environ
        values = read(env, Path.cwd() if cwd is None else cwd)
        if "default_spec" in values:
            values["default_source"] = "env"
        return cls(**values)

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
