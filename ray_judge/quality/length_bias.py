"""Length bias: does the judge pay for length? The cheapest early sign of a policy that
learned to pad (OpenRLHF #236: response length spikes while the reward climbs).

Per judge and backend, a rolling window of the latest ok verdicts keeps ``(response
length, score)``: the length in characters, a trajectory's the length of its rendered
transcript. From the window: Spearman's rank correlation of length and score, and the
mean score in each length quartile (shortest fourth first).

Recording a verdict appends to a deque (O(1)); the statistics (a sort of the window) are
computed lazily: when status is read, and every ``every`` verdicts so that the WARNING
comes without anyone asking. The WARNING is logged once per crossing: when the
correlation first reaches ``warn`` over at least ``min_verdicts`` verdicts, and again only
after it fell back below ``warn - HYSTERESIS``.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..judging.transcript import render_transcript
from ..messages import is_messages
from ..shift.stats import spearman

__all__ = ["HYSTERESIS", "LengthBias", "LengthStats", "LengthWindow", "length_of", "line",
           "quartiles"]

logger = logging.getLogger(__name__)

#: How far below the threshold the correlation must fall before another WARNING may come.
HYSTERESIS = 0.05


def length_of(response: Any) -> int:
    """Characters of a response: a text's, or a message list's rendered transcript."""
    if isinstance(response, str):
        return len(response)
    if is_messages(response):
        return len(render_transcript(response))
    return len(str(response))


def quartiles(pairs: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """The pairs ``(length, score)`` cut by length into four groups of (nearly) equal
    size, shortest first: each group's length range, size and mean score. Fewer than
    four pairs: one group per pair."""
    ordered = sorted(pairs)
    n = len(ordered)
    parts = min(4, n)
    out = []
    for q in range(parts):
        chunk = ordered[q * n // parts:(q + 1) * n // parts]
        out.append({"quartile": q + 1, "n": len(chunk), "min_length": chunk[0][0],
                    "max_length": chunk[-1][0],
                    "mean_score": round(statistics.fmean(s for _, s in chunk), 4)})
    return out


@dataclass(frozen=True)
class LengthStats:
    """What one window says: ``n`` verdicts, Spearman's rho (None: undefined) and the
    quartiles (:func:`quartiles`)."""

    n: int
    spearman: float | None
    quartiles: list[dict[str, Any]]

    @classmethod
    def of(cls, pairs: list[tuple[int, float]]) -> LengthStats:
        if not pairs:
            return cls(0, None, [])
        rho = spearman([float(a) for a, _ in pairs], [s for _, s in pairs])
        return cls(len(pairs), None if rho is None else round(rho, 4), quartiles(pairs))


class LengthWindow:
    """The latest ``size`` (length, score) pairs of one judge on one backend."""

    def __init__(self, size: int) -> None:
        self.pairs: deque[tuple[int, float]] = deque(maxlen=size)
        self.seen = 0
        self.warned = False
        self._stats: LengthStats | None = None

    def add(self, length: int, score: float) -> None:
        self.pairs.append((length, score))
        self.seen += 1
        self._stats = None

    @property
    def stats(self) -> LengthStats:
        """The window's statistics, computed once per change."""
        if self._stats is None:
            self._stats = LengthStats.of(list(self.pairs))
        return self._stats


class LengthBias:
    """Length windows per (judge, backend), and the WARNING.

    Args:
        window: verdicts per window (0: off).
        warn: Spearman correlation of length and score that is logged as a WARNING.
        min_verdicts: verdicts in the window before a WARNING may come.
        every: verdicts between unasked computations (default: a quarter window, at
            least 50), so the cost per verdict stays O(1) amortised.
        on_stats: called with (judge, backend, stats) after each computation (metrics).
    """

    def __init__(self, window: int, warn: float, min_verdicts: int, *,
                 every: int | None = None,
                 on_stats: Callable[[str, str, LengthStats], None] = lambda j, b, s: None
                 ) -> None:
        self.window, self.warn, self.min_verdicts = window, warn, min_verdicts
        self.every = every or max(50, window // 4)
        self._on_stats = on_stats
        self.windows: dict[tuple[str, str], LengthWindow] = {}

    def observe(self, judge: str, backend: str, response: Any, score: float) -> None:
        """One ok verdict of ``judge`` on ``backend``."""
        if self.window <= 0:
            return
        key = (judge, backend)
        found = self.windows.get(key)
        if found is None:
            found = self.windows[key] = LengthWindow(self.window)
        found.add(length_of(response), score)
        if found.seen % self.every == 0:
            self._check(key, found)

    def snapshot(self) -> dict[str, Any]:
        """``status()["length_bias"]``: per judge, per backend, the window's figures."""
        out: dict[str, Any] = {}
        for key, found in sorted(self.windows.items()):
            stats = self._check(key, found)
            judge, backend = key
            out.setdefault(judge, {})[backend] = {
                "n": stats.n, "seen": found.seen, "spearman": stats.spearman,
                "quartiles": stats.quartiles, "warning": found.warned,
                "threshold": self.warn, "min_verdicts": self.min_verdicts,
                "line": line(stats)}
        return out

    def _check(self, key: tuple[str, str], found: LengthWindow) -> LengthStats:
        stats = found.stats
        rho = stats.spearman
        if rho is not None and stats.n >= self.min_verdicts:
            if not found.warned and rho >= self.warn:
                found.warned = True
                logger.warning("judge %s on %s pays for length: %s (threshold %.2f); a "
                               "policy may be learning to pad", key[0], key[1], line(stats),
                               self.warn)
            elif found.warned and rho < self.warn - HYSTERESIS:
                found.warned = False
        try:
            self._on_stats(key[0], key[1], stats)
        except Exception:  # metrics must never break the bookkeeping
            logger.exception("recording length-bias metrics failed")
        return stats


def line(stats: LengthStats) -> str:
    """``Spearman +0.62 on 1000 verdicts; mean score by length quartile 0.31 0.45 ...``."""
    rho = "n/a" if stats.spearman is None else f"{stats.spearman:+.2f}"
    means = " ".join(f"{q['mean_score']:.2f}" for q in stats.quartiles) or "-"
    return (f"length vs score Spearman {rho} on {stats.n} verdicts; mean score by length "
            f"quartile (shortest first) {means}")
