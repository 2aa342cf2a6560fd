"""The exceptions of ray_judge, all under one root.

    JudgeError
    ├── ConfigError (ValueError)            bad configuration: environment, rubric file, CLI path
    │   ├── InvalidSpecError               a backend spec that does not parse
    │   ├── RubricError                    a rubric template with unknown placeholders
    │   └── JudgeDefinitionError           a judge definition or judges file that is unusable
    ├── ScoreParseError (ValueError)        the judge's text holds no valid ``SCORE:`` line
    ├── OverrideFileError (OSError)         the override file cannot be written or removed
    ├── BackendUnavailableError             a backend cannot start (CLI missing, litellm missing)
    ├── BackendCallError                    one call to a model failed; carries a Verdict status
    │   ├── RateLimitedError               429 and friends; ``retry_after`` when known
    │   ├── UsageLimitedError              subscription usage limit; ``resets_at`` when known
    │   ├── AuthError                      bad or missing credentials
    │   ├── BackendTimeoutError            no answer within the attempt's timeout
    │   ├── TransientBackendError          5xx, dropped connection, malformed body
    │   └── PermanentBackendError          the request itself is refused (400, context length)
    └── JudgeNotRunningError                no judge actor is reachable

Every class survives ``pickle.loads(pickle.dumps(e))`` with its attributes, because
under Ray an exception raised in an actor is pickled on its way to the caller.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BackendCallError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigError",
    "InvalidSpecError",
    "JudgeDefinitionError",
    "JudgeError",
    "JudgeNotRunningError",
    "OverrideFileError",
    "PermanentBackendError",
    "RateLimitedError",
    "RubricError",
    "ScoreParseError",
    "TransientBackendError",
    "UsageLimitedError",
]


def _rebuild(cls: type[JudgeError], message: str, attrs: dict[str, Any]) -> JudgeError:
    return cls(message, **attrs)


class JudgeError(Exception):
    """Root of every error ray_judge raises on purpose."""

    _attrs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str = "", **attrs: Any) -> None:
        unknown = set(attrs) - set(self._attrs)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown attributes {sorted(unknown)}")
        super().__init__(message)
        self.message = message
        for name in self._attrs:
            setattr(self, name, attrs.get(name))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, {n: getattr(self, n) for n in self._attrs}))

    def __str__(self) -> str:
        return self.message


class ConfigError(JudgeError, ValueError):
    """The configuration (environment, files, paths) is not usable."""

    _attrs = ("name", "value")


class InvalidSpecError(ConfigError):
    """A backend spec string does not parse; ``value`` holds the text."""


class RubricError(ConfigError):
    """A rubric template is unusable; ``name`` is the file, ``value`` the culprit."""


class JudgeDefinitionError(ConfigError):
    """A judge definition is unusable; ``judge``, ``key`` and ``value`` say where and what,
    ``path`` is the judges file it came from (``None``: defined in code)."""

    _attrs = ("judge", "key", "value", "path")


class ScoreParseError(JudgeError, ValueError):
    """No valid final ``SCORE: N`` line; ``value`` is the offending line, if any."""

    _attrs = ("value",)


class OverrideFileError(JudgeError, OSError):
    """The override file could not be written or removed."""

    _attrs = ("path",)


class BackendUnavailableError(JudgeError):
    """A backend cannot be used at all in this process."""

    _attrs = ("backend",)


class JudgeNotRunningError(JudgeError):
    """No judge actor answered under the configured name and namespace."""

    _attrs = ("name", "namespace")


class BackendCallError(JudgeError):
    """One attempt to get a verdict from a model failed.

    ``status`` is the Verdict status this failure maps to; ``retryable`` says whether
    another attempt may help.
    """

    status: ClassVar[str] = "backend_error"
    retryable: ClassVar[bool] = True
    _attrs = ("backend", "retry_after", "resets_at", "http_status", "exit_code", "stderr", "raw")


class RateLimitedError(BackendCallError):
    status = "rate_limited"


class UsageLimitedError(BackendCallError):
    """A subscription or quota limit: retrying will not help before ``resets_at``."""

    status = "usage_limited"
    retryable = False


class AuthError(BackendCallError):
    status = "auth_error"
    retryable = False


class BackendTimeoutError(BackendCallError):
    status = "timeout"


class TransientBackendError(BackendCallError):
    status = "backend_error"


class PermanentBackendError(BackendCallError):
    status = "backend_error"
    retryable = False


# How an error shows a bad value: helpers the package formats its messages with (not
# exported: ``__all__`` is the exceptions).
def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: how an error message shows a bad value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def excerpt(text: str, limit: int = 200) -> str:
    """``text`` stripped and cut to ``limit`` characters: how an error quotes an answer."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
