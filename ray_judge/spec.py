"""The backend spec: which judge serves a verdict, as a typed value.

Two forms, the same ones the ``.judge_backend`` file and ``LLM_JUDGE_NAME`` hold:

* ``ccode-4-sonnet`` (and the other aliases in :data:`CCODE_MODELS`): the Claude Code CLI.
* ``litellm:<model>``: any LiteLLM model string, e.g. ``litellm:openai/gpt-4o``.

Nothing else in the package takes specs apart as strings: parse once with
:meth:`BackendSpec.parse`, pass the value around, print it with ``str()``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError, InvalidSpecError

__all__ = [
    "CCODE_MODELS",
    "DEFAULT_SPEC",
    "MAX_SPEC_LENGTH",
    "BackendSpec",
    "parse_ccode_model_overrides",
]

#: Claude Code aliases and the full model id each sends as ``--model``. Full ids, not the
#: CLI's own short aliases (``sonnet``), because those move between CLI releases and a
#: multi-day run must not change judge halfway. Override with ``LLM_JUDGE_CCODE_MODEL``.
CCODE_MODELS: Mapping[str, str] = {
    "ccode-4-sonnet": "claude-sonnet-4-20250514",
    "ccode-4-opus": "claude-opus-4-20250514",
    "ccode-4-haiku": "claude-haiku-4-5-20251001",
    "ccode-4.1-opus": "claude-opus-4-1-20250805",
    "ccode-4.5-sonnet": "claude-sonnet-4-5-20250929",
    "ccode-4.5-opus": "claude-opus-4-5-20251101",
    "ccode-4.5-haiku": "claude-haiku-4-5-20251001",
}

DEFAULT_SPEC = "ccode-4-sonnet"
MAX_SPEC_LENGTH = 256
LITELLM_PREFIX = "litellm:"

_ACCEPTED = (
    "accepted forms: 'litellm:<model>' (e.g. 'litellm:anthropic/claude-3-opus-20240229') "
    f"or a Claude Code alias ({', '.join(sorted(CCODE_MODELS))})"
)


def _shown(text: str) -> str:
    """The bad value as the user should see it: quoted, escapes visible, never huge."""
    shown = repr(text)
    return shown if len(shown) <= 80 else f"{shown[:60]}...{shown[-12:]} ({len(text)} chars)"


def _reject(text: str, why: str) -> InvalidSpecError:
    return InvalidSpecError(
        f"invalid judge backend {_shown(text)}: {why}; {_ACCEPTED}", name="spec", value=text
    )


def _check_characters(text: str, body: str) -> None:
    for ch in body:
        if ch.isspace():
            raise _reject(text, "it contains whitespace or a line break inside")
        if unicodedata.category(ch)[0] == "C":
            raise _reject(text, f"it contains the control character {ch!r}")


@dataclass(frozen=True, order=True)
class BackendSpec:
    """A parsed judge backend.

    Example:
        >>> spec = BackendSpec.parse("litellm:openai/gpt-4o")
        >>> spec.kind, spec.name, str(spec)
        ('litellm', 'openai/gpt-4o', 'litellm:openai/gpt-4o')
    """

    kind: Literal["ccode", "litellm"]
    #: the ccode alias (``ccode-4-sonnet``) or the LiteLLM model string
    name: str

    def __post_init__(self) -> None:
        # Constructing directly must not bypass the grammar: round-trip through parse.
        if BackendSpec.parse(self._format()) != self:  # pragma: no cover - guarded by parse
            raise _reject(self._format(), "does not round-trip")

    def _format(self) -> str:
        return self.name if self.kind == "ccode" else f"{LITELLM_PREFIX}{self.name}"

    def __str__(self) -> str:
        return self._format()

    @classmethod
    def parse(cls, text: object) -> BackendSpec:
        """Parse ``text`` strictly; raise :class:`InvalidSpecError` naming the bad value."""
        if not isinstance(text, str):
            raise InvalidSpecError(
                f"invalid judge backend: expected a string, got {type(text).__name__} "
                f"{_shown(str(text))}; {_ACCEPTED}",
                name="spec",
                value=repr(text),
            )
        if len(text) > MAX_SPEC_LENGTH + 2:
            raise _reject(text, f"longer than {MAX_SPEC_LENGTH} characters")
        body = text.strip(" \t")
        if body.endswith("\r\n"):
            body = body[:-2]
        elif body.endswith("\n"):
            body = body[:-1]
        body = body.strip(" \t")
        if not body:
            raise _reject(text, "it is empty")
        if len(body) > MAX_SPEC_LENGTH:
            raise _reject(text, f"longer than {MAX_SPEC_LENGTH} characters")
        _check_characters(text, body)
        if body.startswith(LITELLM_PREFIX):
            model = body[len(LITELLM_PREFIX) :]
            if not model:
                raise _reject(text, "the LiteLLM model is empty")
            return cls._make("litellm", model)
        if body in CCODE_MODELS:
            return cls._make("ccode", body)
        if body.startswith("ccode"):
            raise _reject(text, "unknown Claude Code alias")
        raise _reject(text, "unknown backend prefix")

    @classmethod
    def _make(cls, kind: Literal["ccode", "litellm"], name: str) -> BackendSpec:
        spec = object.__new__(cls)
        object.__setattr__(spec, "kind", kind)
        object.__setattr__(spec, "name", name)
        return spec

    @classmethod
    def litellm(cls, model: str) -> BackendSpec:
        return cls.parse(f"{LITELLM_PREFIX}{model}")

    @classmethod
    def ccode(cls, alias: str = DEFAULT_SPEC) -> BackendSpec:
        return cls.parse(alias)

    def model(self, ccode_overrides: Mapping[str, str] | None = None) -> str:
        """The model id the backend sends: the CLI's ``--model`` or LiteLLM's ``model=``."""
        if self.kind == "litellm":
            return self.name
        overrides = ccode_overrides or {}
        return overrides.get(self.name) or overrides.get("*") or CCODE_MODELS[self.name]


def parse_ccode_model_overrides(text: str | None) -> dict[str, str]:
    """Parse ``LLM_JUDGE_CCODE_MODEL``.

    ``claude-sonnet-4-5`` (a bare id) applies to every ccode alias;
    ``ccode-4-sonnet=claude-sonnet-4-5,ccode-4-opus=claude-opus-4-1`` sets them one by one.
    """
    if text is None or not text.strip():
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        alias, sep, model = item.partition("=")
        alias, model = alias.strip(), model.strip()
        if not sep:
            alias, model = "*", alias
        if alias != "*" and alias not in CCODE_MODELS:
            raise ConfigError(
                f"LLM_JUDGE_CCODE_MODEL: unknown alias {alias!r} in {text!r}; "
                f"known: {', '.join(sorted(CCODE_MODELS))}",
                name="LLM_JUDGE_CCODE_MODEL",
                value=text,
            )
        if not model or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in model):
            raise ConfigError(
                f"LLM_JUDGE_CCODE_MODEL: bad model id {model!r} in {text!r}",
                name="LLM_JUDGE_CCODE_MODEL",
                value=text,
            )
        out[alias] = model
    return out
