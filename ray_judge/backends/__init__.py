"""Judge backends, chosen by the spec's kind through a registry.

The registry maps a kind to ``"module:Class"`` so that choosing a backend imports only
that backend: ``litellm`` costs seconds of CPU to import and the CLI must never pay it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..config import JudgeConfig
from ..spec import BackendSpec
from .base import Backend, Completion

__all__ = ["CCODE_MODE_CLASSES", "REGISTRY", "Backend", "Completion", "backend_class",
           "create_backend"]

REGISTRY: Mapping[str, str] = {
    "ccode": "ray_judge.backends.ccode:ClaudeCodeBackend",
    "litellm": "ray_judge.backends.litellm_backend:LiteLLMBackend",
    "fake": "ray_judge.backends.fake:FakeBackend",
}

#: The ccode backend's class per ``LLM_JUDGE_CCODE_MODE`` (used unless a caller's registry
#: replaces the ccode entry).
CCODE_MODE_CLASSES: Mapping[str, str] = {
    "oneshot": "ray_judge.backends.ccode:ClaudeCodeBackend",
    "session": "ray_judge.backends.ccode_session:ClaudeCodeSessionBackend",
}


def backend_class(target: str) -> type[Backend]:
    """Import ``"module:Class"`` (a REGISTRY value, or any such path a caller supplies)."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise ValueError(f"backend class must look like 'module:Class', got {target!r}")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{target!r} is not a Backend subclass")
    return cls


def create_backend(spec: BackendSpec, config: JudgeConfig, *,
                   registry: Mapping[str, str] | None = None, **kwargs: Any) -> Backend:
    """Build the backend for ``spec``; ``registry`` overrides entries by kind (tests, dry runs)."""
    table = {**REGISTRY, "ccode": CCODE_MODE_CLASSES[config.ccode_mode], **(registry or {})}
    return backend_class(table[spec.kind])(spec, config, **kwargs)
