"""LiteLLM's prices on the lean transport.

Tokens are priced by LiteLLM's ``completion_cost`` (``cost_per_token`` underneath),
once per served model; prices are linear in the token counts, checked, else every
call asks LiteLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .litellm_route import Route

__all__ = ["Pricing"]

# Prices above this many tokens may be tiered (e.g. above 200k input tokens).
_LINEAR_PROBE = (300_000, 100_000)


class Pricing:
    """LiteLLM's price of a call, per served model: ``completion_cost`` once per model."""

    def __init__(self, litellm: ModuleType, route: Route) -> None:
        self._litellm = litellm
        self._route = route
        self._rates: dict[str, tuple[float, float] | bool | None] = {}

    def _litellm_cost(self, served: str, tokens_in: int, tokens_out: int,
                      usage: Mapping[str, Any] | None = None) -> float | None:
        response = {"model": served, "usage": dict(usage) if usage is not None else {
            "prompt_tokens": tokens_in, "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out}}
        try:
            cost = self._litellm.completion_cost(
                completion_response=response, model=self._route.model,
                custom_llm_provider=self._route.provider)
        except Exception:  # no price known: LiteLLM reports None too
            return None
        return float(cost) if isinstance(cost, (int, float)) else None

    def cost(self, served: str | None, tokens_in: int | None, tokens_out: int | None,
             usage: Mapping[str, Any] | None = None) -> float | None:
        """The price; ``usage`` (the provider's own) when it has more than two counts."""
        served = served or self._route.model
        if usage is not None:  # cache reads and writes have prices of their own
            return self._litellm_cost(served, 0, 0, usage)
        if served not in self._rates:
            self._rates[served] = self._probe(served)
        rates = self._rates[served]
        if rates is None:
            return None
        tokens_in, tokens_out = tokens_in or 0, tokens_out or 0
        if rates is True:  # tiered prices: LiteLLM prices every call
            return self._litellm_cost(served, tokens_in, tokens_out)
        assert isinstance(rates, tuple)
        return tokens_in * rates[0] + tokens_out * rates[1]

    def _probe(self, served: str) -> tuple[float, float] | bool | None:
        per_in = self._litellm_cost(served, 1, 0)
        per_out = self._litellm_cost(served, 0, 1)
        if per_in is None or per_out is None:
            return None
        big_in, big_out = _LINEAR_PROBE
        big = self._litellm_cost(served, big_in, big_out)
        linear = big_in * per_in + big_out * per_out
        if big is None or abs(big - linear) > 1e-9 * max(abs(big), 1e-12):
            return True
        return per_in, per_out
