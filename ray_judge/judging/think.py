"""A reasoning model's scratch work: the ``<think>`` spans no parser reads."""

from __future__ import annotations

import re

__all__ = ["strip_think"]

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def strip_think(text: str) -> str:
    """``text`` without ``<think>`` spans; an unclosed one runs to the end, and text
    before a lone ``</think>`` (its opening tag left out by the model) goes too."""
    text = _THINK.sub("", text)
    lower = text.lower()
    if "<think>" in lower:
        text = text[: lower.index("<think>")]
        lower = text.lower()
    if "</think>" in lower:
        text = text[lower.rindex("</think>") + len("</think>"):]
    return text
