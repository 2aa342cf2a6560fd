"""Test doubles that ship with the package: a fake LLM provider on 127.0.0.1.

Imported lazily, so ``import ray_judge.testing`` costs nothing until a name is used and
``python -m ray_judge.testing.fake_llm`` does not import its own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .behaviour import DEFAULT_TEXT, Behaviour, RecordedRequest
    from .process import FakeLLMProcess
    from .server import FakeLLMServer

__all__ = ["DEFAULT_TEXT", "Behaviour", "FakeLLMProcess", "FakeLLMServer", "RecordedRequest"]

_WHERE = {
    "DEFAULT_TEXT": ".behaviour",
    "Behaviour": ".behaviour",
    "FakeLLMServer": ".server",
    "RecordedRequest": ".behaviour",
    "FakeLLMProcess": ".process",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
