"""Bounds on an eval's figures: ``spearman=0.6`` (at least 0.6), ``mae=1.5`` (at most).

A bound's direction comes from its figure: for those where less is better
(:data:`~.metrics.LOWER_IS_BETTER`: ``mae``, ``outside_distance``, cost, latency...) the
value is a maximum, for the others a minimum. ``>=`` and ``<=`` may be written out
(``spearman>=0.6``, ``mae<=1.5``) and must then agree with that direction. A figure
that is not defined on a backend's cases (None) falls short of any bound: a gate never
passes on a figure it could not compute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .metrics import LOWER_IS_BETTER, METRICS

__all__ = ["Bound", "shortfalls"]

_BOUND = re.compile(r"^\s*([A-Za-z_0-9]+)\s*(>=|<=|=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Bound:
    """``metric`` must be at least (or, for a lower-is-better figure, at most) ``value``."""

    metric: str
    value: float

    @property
    def at_most(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def __str__(self) -> str:
        return f"{self.metric}{'<=' if self.at_most else '>='}{self.value:g}"

    @classmethod
    def parse(cls, text: str) -> Bound:
        """``METRIC=VALUE`` (or with ``>=``/``<=``); ValueError naming the problem, and
        listing the known figures for an unknown one."""
        match = _BOUND.match(text)
        if match is None:
            raise ValueError(f"a bound is METRIC=VALUE, e.g. spearman=0.6, got {text!r}")
        metric, op, raw = match.groups()
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r} in {text!r}; known: "
                             f"{', '.join(METRICS)}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"the value of {metric} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"the value of {metric} must be finite, got {raw!r}")
        bound = cls(metric, value)
        if op != "=" and (op == "<=") != bound.at_most:
            raise ValueError(f"{text!r}: {metric} is bounded from "
                             f"{'above' if bound.at_most else 'below'} (write {bound})")
        return bound

    def shortfall(self, metrics: Mapping[str, float | int | None]) -> str | None:
        """Why ``metrics`` miss this bound (``spearman 0.42 < 0.6, short by 0.18``), or
        None when they meet it."""
        got = metrics.get(self.metric)
        if got is None:
            return f"{self.metric} n/a (no case it applies to, or undefined) but {self}"
        if self.at_most and got > self.value:
            return f"{self.metric} {got:.4g} > {self.value:g}, over by {got - self.value:.4g}"
        if not self.at_most and got < self.value:
            return f"{self.metric} {got:.4g} < {self.value:g}, short by {self.value - got:.4g}"
        return None


def shortfalls(backends: Mapping[str, Mapping[str, float | int | None]],
               bounds: list[Bound]) -> list[str]:
    """One line per (backend, bound) missed: ``<backend>: <why>``."""
    return [f"{backend}: {why}" for backend, metrics in backends.items() for bound in bounds
            if (why := bound.shortfall(metrics)) is not None]
