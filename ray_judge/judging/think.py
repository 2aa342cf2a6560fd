"""A reasoning model's scratch work: the ``<think>`` spans no parser reads.

One rule for every parser that reads text (the JSON answers of groups and pairs too):

- ``<think>...</think>`` is thinking; the text either side of it is kept, with a space
  where the span was, so that ``7<think>...</think>5`` does not read as ``75``;
- an unclosed ``<think>`` means the model never finished thinking: nothing after it is
  an answer;
- a lone ``</think>`` (a model whose chat template wrote the opening tag into the
  prompt) closes thinking that began at the start: nothing before it is an answer.

Tags match in any case; a ``<think>`` inside an open span is part of the span.
"""

from __future__ import annotations

import re

__all__ = ["strip_think"]

_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)


def strip_think(text: str) -> str:
    """``text`` without its thinking, by the rule above."""
    kept: list[str] = []
    start = 0  # where the visible text now being read starts
    thinking = False
    # One pass over the tags, so a text of many unclosed tags stays linear.
    for tag in _TAG.finditer(text):
        if tag[1]:  # </think>
            if not thinking:
                kept = []
            thinking = False
            start = tag.end()
        elif not thinking:
            kept.append(text[start:tag.start()])
            thinking = True
    if not thinking:
        kept.append(text[start:])
    return " ".join(part for part in kept if part)
