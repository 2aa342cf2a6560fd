"""ray_judge: an LLM-as-a-judge pool for RL training on Ray, switchable without a restart.

The pool functions (``start_judge``, ``get_judge``, ``stop_judge``) and ``JudgeClient``
import Ray on first use, so ``import ray_judge`` stays cheap for the switch CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import JudgeConfig
from .errors import (
    AuthError,
    BackendCallError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    InvalidSpecError,
    JudgeDefinitionError,
    JudgeError,
    JudgeNotRunningError,
    OverrideFileError,
    PermanentBackendError,
    RateLimitedError,
    RubricError,
    ScoreParseError,
    TransientBackendError,
    UsageLimitedError,
)
from .judging.definition import JudgeDefinition
from .spec import BackendSpec
from .verdict import GroupRequest, JudgeRequest, Status, Verdict

if TYPE_CHECKING:
    from .pool.client import JudgeClient
    from .pool.service import get_judge, start_judge, stop_judge

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BackendCallError",
    "BackendSpec",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigError",
    "GroupRequest",
    "InvalidSpecError",
    "JudgeClient",
    "JudgeConfig",
    "JudgeDefinition",
    "JudgeDefinitionError",
    "JudgeError",
    "JudgeNotRunningError",
    "JudgeRequest",
    "OverrideFileError",
    "PermanentBackendError",
    "RateLimitedError",
    "RubricError",
    "ScoreParseError",
    "Status",
    "TransientBackendError",
    "UsageLimitedError",
    "Verdict",
    "get_judge",
    "start_judge",
    "stop_judge",
]

_LAZY = {"get_judge", "start_judge", "stop_judge"}


def __getattr__(name: str) -> Any:
    if name == "JudgeClient":
        from .pool.client import JudgeClient

        return JudgeClient
    if name in _LAZY:
        from .pool import service

        return getattr(service, name)
    raise AttributeError(f"module 'ray_judge' has no attribute {name!r}")
