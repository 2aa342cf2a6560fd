"""Prompt-cache breakpoints for Claude: which routes take them, where they go.

Anthropic caches a prompt prefix only where the request marks it, with a
``cache_control: {"type": "ephemeral"}`` breakpoint on a content block, and only when the
prefix up to it is at least the model's minimum (LiteLLM's ``prompt_cache_min_tokens``
when its model info has one, else 1,024 tokens, 2,048 for Haiku). A judge prompt has two
natural prefixes: the system prompt (the rubric, the same on every call of a judge) and
the system prompt plus the shared part of the user message (:attr:`JudgePrompt.shared`:
the PROMPT, REFERENCE and field blocks, the same for every response to one task).
:func:`cache_messages` marks each one that is long enough, never the response.

Tokens are estimated as characters / 4, the usual rule for English text; a prefix just
under the minimum by this estimate is not marked (Anthropic would ignore the mark).

LiteLLM passes ``cache_control`` on text blocks through to Anthropic, to Claude on
Bedrock (as ``cachePoint`` blocks on the Converse API, ``cache_control`` on Invoke) and
to Claude on Vertex AI; other providers get plain string contents, unchanged (OpenAI and
vLLM cache prefixes on their own).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..prompt import JudgePrompt

__all__ = ["CACHE_CONTROL", "cache_messages", "estimate_tokens", "min_cache_tokens"]

CACHE_CONTROL = {"type": "ephemeral"}

#: LiteLLM provider names whose Claude models take ``cache_control`` breakpoints
_CLAUDE_PROVIDERS = ("anthropic", "bedrock", "bedrock_converse", "vertex_ai",
                     "vertex_ai-anthropic_models")


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is: its characters / 4."""
    return len(text) // 4


def min_cache_tokens(litellm: ModuleType, model: str) -> int | None:
    """The smallest prefix (tokens) ``model``'s provider caches at a breakpoint, or None
    when the route takes no breakpoints (not Claude, or a provider LiteLLM does not pass
    ``cache_control`` to)."""
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
    except Exception:  # an unknown provider: LiteLLM's path reports it
        return None
    if provider not in _CLAUDE_PROVIDERS or (
            provider != "anthropic" and "claude" not in name.lower()):
        return None
    try:
        known = litellm.get_model_info(name, custom_llm_provider=provider).get(
            "prompt_cache_min_tokens")
    except Exception:  # a model LiteLLM does not know: Anthropic's documented minimums
        known = None
    if isinstance(known, int) and not isinstance(known, bool) and known > 0:
        return known
    return 2048 if "haiku" in name.lower() else 1024


def cache_messages(prompt: JudgePrompt, min_tokens: int) -> list[dict[str, Any]]:
    """``prompt``'s chat messages with a breakpoint at the end of the system prompt and
    one at the end of the user message's shared part, each when its prefix is at least
    ``min_tokens``; a marked content becomes a list of text blocks, the same text."""
    messages: list[dict[str, Any]] = prompt.as_messages()
    if estimate_tokens(prompt.system) >= min_tokens:
        messages[0]["content"] = [
            {"type": "text", "text": prompt.system, "cache_control": dict(CACHE_CONTROL)}]
    shared = prompt.shared
    if 0 < shared < len(prompt.user) and prompt.user[:shared].strip() and (
            estimate_tokens(prompt.system) + estimate_tokens(prompt.user[:shared])
            >= min_tokens):
        messages[1]["content"] = [
            {"type": "text", "text": prompt.user[:shared], "cache_control": dict(CACHE_CONTROL)},
            {"type": "text", "text": prompt.user[shared:]}]
    return messages
