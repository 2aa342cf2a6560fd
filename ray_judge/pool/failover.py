"""Automatic failover along ``LLM_JUDGE_FALLBACK``: a circuit breaker per backend.

The primary is whatever the person chose (override file, else ``LLM_JUDGE_NAME``, else
the default); the chain adds the fallbacks after it. A backend's circuit opens when it
reports ``usage_limited`` (until the limit resets, when the backend said when),
``auth_error``, or ``rate_limited`` on more than ``rate_limited_budget`` requests in a
row. New requests then go to the first backend whose circuit is closed.

When an open circuit's time is up it goes half-open: exactly one request probes it.
Success closes it (requests go back to the primary); failure re-opens it with a longer
wait. So the judge does not flip-flop between backends on every other request.
The override file is never rewritten: failover sits on top of it.

A backend the spend budget diverts from (``diverts``, :class:`~.budget.Budget` under
the ``fallback`` policy) is passed over like an open circuit, without a probe, for as
long as the budget says so; a ``budget_exhausted`` verdict of it is served again by the
next backend, and opens no circuit (the backend is not at fault).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..spec import BackendSpec
from ..verdict import Status, Verdict

__all__ = ["FailoverChain"]

logger = logging.getLogger(__name__)

#: Statuses that open a circuit at once (retrying the same backend cannot help).
_HARD = (Status.USAGE_LIMITED, Status.AUTH_ERROR)


def _hard(verdict: Verdict) -> bool:
    # A backend that cannot start on a worker (CLI missing) is as out as a bad key.
    return verdict.status in _HARD or bool(verdict.extra.get("unavailable"))


@dataclass
class _Circuit:
    open_until: float = 0.0
    reason: str = ""
    probing: bool = False  # a half-open probe is in flight
    failures: int = 0  # consecutive openings, for the growing probe interval
    rate_limited_run: int = 0

    @property
    def is_open(self) -> bool:
        return self.open_until > 0.0


class FailoverChain:
    """Pick the backend for new requests; learn from the verdicts that come back."""

    def __init__(self, fallbacks: Sequence[BackendSpec], *, probe_interval_s: float = 60.0,
                 max_probe_interval_s: float = 900.0, rate_limited_budget: int = 20,
                 clock: Callable[[], float] = time.time,
                 diverts: Callable[[str], bool] = lambda spec: False) -> None:
        self.fallbacks = list(fallbacks)
        self._diverts = diverts
        self.probe_interval_s = probe_interval_s
        self.max_probe_interval_s = max_probe_interval_s
        self.rate_limited_budget = rate_limited_budget
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self.failovers = 0
        self._serving: str | None = None

    def chain(self, primary: BackendSpec) -> list[BackendSpec]:
        out = [primary]
        out += [s for s in self.fallbacks if s != primary and s not in out]
        return out

    def route(self, primary: BackendSpec) -> tuple[BackendSpec, int | None]:
        """The backend for the next dispatch round and how many items it may take
        (``1`` for a half-open probe, ``None`` for no cap)."""
        now = self._clock()
        chosen: tuple[BackendSpec, int | None] | None = None
        for spec in self.chain(primary):
            if self._diverts(str(spec)):
                continue
            circuit = self._circuits.get(str(spec))
            if circuit is None or not circuit.is_open:
                chosen = (spec, None)
                break
            if circuit.open_until <= now and not circuit.probing:
                circuit.probing = True
                logger.info("judge backend %s: probing whether it is back", spec)
                return spec, 1
        if chosen is None:  # every circuit is open: wait on the one that reopens first
            spec = min(self.chain(primary),
                       key=lambda s: self._circuits.get(str(s), _Circuit()).open_until)
            chosen = (spec, None)
        self._note_serving(primary, chosen[0])
        return chosen

    def _note_serving(self, primary: BackendSpec, spec: BackendSpec) -> None:
        text = str(spec)
        if text == self._serving:
            return
        previous, self._serving = self._serving, text
        if spec != primary:
            self.failovers += 1
            circuit = self._circuits.get(str(primary))
            why = ("its spend budget is reached" if self._diverts(str(primary))
                   else (circuit.reason if circuit else "") or "primary unavailable")
            logger.warning("judge backend failover: %s -> %s (%s)", previous or primary, text,
                           why)
        elif previous is not None and previous in self._circuits:
            logger.info("judge backend %s serves again", text)

    def can_reroute(self, verdict: Verdict, primary: BackendSpec) -> bool:
        """Whether a failed verdict should be served again, by another backend that is up."""
        qualifies = _hard(verdict) or (
            verdict.status is Status.RATE_LIMITED
            and self._circuits.get(verdict.backend or "", _Circuit()).is_open) or (
            verdict.status is Status.BUDGET_EXHAUSTED and self._diverts(verdict.backend or ""))
        return qualifies and any(
            str(spec) != verdict.backend and not self._diverts(str(spec))
            and not self._circuits.get(str(spec), _Circuit()).is_open
            for spec in self.chain(primary))

    def report(self, verdict: Verdict) -> None:
        """Learn from a verdict of backend ``verdict.backend``."""
        if (not verdict.backend or verdict.spent_elsewhere  # learnt from its own call
                or verdict.status is Status.BUDGET_EXHAUSTED):  # never sent
            return
        circuit = self._circuits.setdefault(verdict.backend, _Circuit())
        if verdict.status in (Status.OK, Status.PARSE_ERROR):  # the backend answered
            if circuit.is_open:
                logger.info("judge backend %s is back", verdict.backend)
            self._circuits[verdict.backend] = _Circuit()
            return
        if circuit.probing:  # a failed probe: wait longer before the next one
            self._open(verdict.backend, circuit, verdict)
            return
        if circuit.is_open:  # stragglers dispatched before it opened
            return
        if verdict.status is Status.RATE_LIMITED:
            circuit.rate_limited_run += 1
            if circuit.rate_limited_run > self.rate_limited_budget:
                self._open(verdict.backend, circuit, verdict)
        elif _hard(verdict):
            self._open(verdict.backend, circuit, verdict)

    def _open(self, backend: str, circuit: _Circuit, verdict: Verdict) -> None:
        now = self._clock()
        circuit.failures += 1
        backoff = min(self.max_probe_interval_s,
                      self.probe_interval_s * 2 ** (circuit.failures - 1))
        until = verdict.resets_at if verdict.resets_at and verdict.resets_at > now else None
        was_open = circuit.is_open
        circuit.open_until = until if until is not None else now + backoff
        circuit.reason = f"{verdict.status.value}: {verdict.error or ''}".strip()[:200]
        circuit.probing = False
        circuit.rate_limited_run = 0
        if not was_open:
            logger.warning("judge backend %s unavailable until %s (%s)", backend,
                           time.strftime("%H:%M:%S UTC", time.gmtime(circuit.open_until)),
                           circuit.reason)

    def snapshot(self) -> dict[str, Any]:
        return {
            "fallbacks": [str(s) for s in self.fallbacks],
            "serving": self._serving,
            "failovers": self.failovers,
            "open": {k: {"until": c.open_until, "reason": c.reason, "probing": c.probing}
                     for k, c in self._circuits.items() if c.is_open},
        }
