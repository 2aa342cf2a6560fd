"""Validation on every switch, and the opt-in gate that keeps a worse judge from serving.

With ``LLM_JUDGE_VALIDATION_FILE`` (a labelled cases file, as ``ray-judge eval`` reads),
every change of the serving backend starts a background validation of the new backend
on those cases: at judge start, after a switch by a person or the override file, a
failover and its return. The cases go on spare capacity only
(:mod:`.spare_judging`): training requests never wait for them. Each backend's latest
figures (the eval's, :func:`~.metrics.summarize`) are kept, so ``status()["validation"]``
shows the serving backend's beside the previous one's.

With ``LLM_JUDGE_VALIDATION_GATE`` (bounds such as ``spearman>=0.6,in_range>=0.8``), a
switch asked for by a person or the override file is *held*: the accepted backend keeps
serving while the requested one is validated, and the switch happens only when it meets
every bound. One that falls short is *refused*: the judge keeps the accepted backend and
says why in one line, until the override file names something else. A failover cannot
wait (its backend is out of quota or failing): it proceeds, and a validation that falls
short is logged at WARNING and flagged.

:class:`SwitchValidation` is Ray-free: the pool gives it ``send_spare`` and asks it,
each round, which backend a person's choice resolves to (:meth:`primary`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..judging.catalog import JudgeCatalog
from ..spec import BackendSpec
from .cases import Case
from .gate import Bound
from .metrics import Judged, summarize, thresholds
from .spare_judging import SendSpare, judge_on_spare

__all__ = ["SHOWN_METRICS", "SwitchValidation", "Validation", "parse_gate"]

logger = logging.getLogger(__name__)

#: The figures a status line shows (when defined on the cases).
SHOWN_METRICS = ("ok", "spearman", "mae", "in_range", "accuracy", "kappa", "kendall_tau")


def parse_gate(text: str) -> tuple[Bound, ...]:
    """``spearman>=0.6,in_range>=0.8`` as bounds; ValueError naming the bad part."""
    bounds = tuple(Bound.parse(part) for part in text.split(",") if part.strip())
    if not bounds:
        raise ValueError("must name at least one bound, such as spearman>=0.6")
    return bounds


@dataclass
class Validation:
    """One backend's validation on the cases: running, then ``passed``/``failed``
    (against the gate's bounds; without a gate, ``done``) or ``stopped``."""

    backend: str
    why: str  # start, switch, failover, back to primary, gate
    started_at: float
    total: int
    done: int = 0
    state: str = "running"
    finished_at: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    shortfalls: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``passed on 12 cases: spearman 0.81, in_range 0.92``, or progress."""
        if self.state == "running":
            return f"validating on {self.total} cases ({self.done} answered)"
        if self.state == "stopped":
            return f"validation stopped after {self.done} of {self.total} cases"
        shown = ", ".join(f"{name} {value:.3g}" for name in SHOWN_METRICS
                          if isinstance(value := self.metrics.get(name), (int, float)))
        short = f" ({'; '.join(self.shortfalls)})" if self.shortfalls else ""
        return f"{self.state} on {self.total} cases: {shown}{short}"

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "why": self.why, "state": self.state,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "done": self.done, "total": self.total, "metrics": dict(self.metrics),
                "shortfalls": list(self.shortfalls), "line": self.line()}


class SwitchValidation:
    """Validates each newly serving backend and, with bounds, gates switches.

    Args:
        cases: the labelled cases (read at judge start: a bad file fails the start).
        catalog: the judge's definitions (a group's ``max_group``, a pair's ``swap``).
        bounds: the gate; empty: validate and report, never hold a switch.
        send_spare: the dispatcher's spare-capacity sender.
        lanes_for: how many cases of a backend may be in flight at once.
        threshold: the pass mark for ``pass`` labels (default: the scale's middle).
        on_result: told of every finished validation (metrics).
        clock: wall-clock time.
    """

    def __init__(self, cases: Sequence[Case], catalog: JudgeCatalog, *,
                 bounds: Sequence[Bound] = (), send_spare: SendSpare,
                 lanes_for: Callable[[BackendSpec], int], threshold: float | None = None,
                 on_result: Callable[[Validation], None] = lambda v: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cases = list(cases)
        self.catalog = catalog
        self.bounds = tuple(bounds)
        self._send_spare = send_spare
        self._lanes_for = lanes_for
        self._threshold = threshold
        self._on_result = on_result
        self._clock = clock
        self.latest: dict[str, Validation] = {}
        self.serving: str | None = None
        self.previous: str | None = None
        self.accepted: BackendSpec | None = None
        self.pending: Validation | None = None
        self.refused: tuple[str, str] | None = None  # (backend, the one-line why)
        self.flagged: list[str] = []  # failovers whose validation fell short
        self._tasks: set[asyncio.Task[None]] = set()
        self._deferred: list[tuple[BackendSpec, Validation]] = []  # before a loop ran

    @classmethod
    def of(cls, config: Any, catalog: JudgeCatalog, **kwargs: Any) -> SwitchValidation | None:
        """From ``LLM_JUDGE_VALIDATION_FILE`` and ``LLM_JUDGE_VALIDATION_GATE``; None
        without a file. A file that does not read, or a gate naming an unknown figure,
        is a :class:`~ray_judge.errors.ConfigError` (the judge does not start)."""
        from ..errors import ConfigError
        from .cases import CasesError, read_cases

        if config.validation_file is None:
            if config.validation_gate:
                raise ConfigError("LLM_JUDGE_VALIDATION_GATE needs the cases to validate "
                                  "on: set LLM_JUDGE_VALIDATION_FILE too")
            return None
        try:
            cases = read_cases(config.validation_file, catalog)
            bounds = parse_gate(config.validation_gate) if config.validation_gate else ()
        except CasesError as exc:
            raise ConfigError(f"LLM_JUDGE_VALIDATION_FILE: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"LLM_JUDGE_VALIDATION_GATE={config.validation_gate!r}: "
                              f"{exc}") from None
        return cls(cases, catalog, bounds=bounds, **kwargs)

    def __repr__(self) -> str:
        return (f"SwitchValidation(cases={len(self.cases)}, gate={self.gate_text or None}, "
                f"serving={self.serving!r})")

    @property
    def gate_text(self) -> str:
        return ",".join(map(str, self.bounds))

    # -- the gate: which backend a person's choice resolves to now ---------------------

    def primary(self, resolved: BackendSpec) -> BackendSpec:
        """The backend to serve as primary for the choice ``resolved``: itself, or
        without a gate, at once; with one, the accepted backend until ``resolved``
        passed its validation (and for good when it fell short)."""
        self._launch_deferred()
        if not self.bounds or self.accepted is None or resolved == self.accepted:
            self.accepted, self.pending = resolved, None
            if self.refused is not None and self.refused[0] != str(resolved):
                self.refused = None
            return resolved
        key = str(resolved)
        if self.refused is not None:
            if self.refused[0] == key:
                return self.accepted
            self.refused = None
        if self.pending is None or self.pending.backend != key:
            self.pending = self._start(resolved, "gate")
        elif self.pending.state == "passed":
            logger.info("switch to %s passed validation (%s)", key, self.pending.line())
            self.accepted, self.pending = resolved, None
            return resolved
        elif self.pending.state in ("failed", "stopped"):
            why = (f"refused {key}: {'; '.join(self.pending.shortfalls) or self.pending.state} "
                   f"on {self.pending.total} cases; serving {self.accepted}")
            logger.warning("%s", why)
            self.refused, self.pending = (key, why), None
        return self.accepted

    # -- validation on every change ----------------------------------------------------

    def settled(self, old: str | None, new: str, why: str) -> None:
        """The serving backend is now ``new`` (a switch, a failover, a return): validate
        it, unless the gate just did."""
        self.previous, self.serving = old, new
        latest = self.latest.get(new)
        if latest is not None and latest.why == "gate" and latest.state == "passed":
            return
        self._start(BackendSpec.parse(new), why)

    def _start(self, spec: BackendSpec, why: str) -> Validation:
        record = Validation(str(spec), why, self._clock(), len(self.cases))
        self.latest[record.backend] = record
        self._deferred.append((spec, record))
        self._launch_deferred()
        return record

    def _launch_deferred(self) -> None:
        """Start what waits for an event loop (a judge's first backend settles in its
        constructor, before the actor's loop runs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        deferred, self._deferred = self._deferred, []
        for spec, record in deferred:
            task = loop.create_task(self._run(spec, record), name=f"ray_judge-validate-{spec}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, spec: BackendSpec, record: Validation) -> None:
        def keep_going() -> bool:  # a newer validation of it, or a judge closing, stops it
            return self.latest.get(record.backend) is record

        def answered(n: int) -> None:
            record.done = n

        try:
            results = await judge_on_spare(self.cases, spec, self.catalog, self._send_spare,
                                           lanes=self._lanes_for(spec), keep_going=keep_going,
                                           on_done=answered)
        except Exception:  # a bug here must not take the judge down with it
            logger.exception("validating %s failed", spec)
            results = None
        record.finished_at = self._clock()
        if results is None:
            record.state = "stopped"
            return
        judged = [Judged(case, [result], thresholds(case, self._threshold))
                  for case, result in zip(self.cases, results, strict=True)]
        record.metrics = summarize(judged)
        record.shortfalls = [why for bound in self.bounds
                             if (why := bound.shortfall(record.metrics)) is not None]
        record.state = ("done" if not self.bounds
                        else "failed" if record.shortfalls else "passed")
        if record.state == "failed" and record.why != "gate":
            # A failover (or the start) could not wait: it serves, flagged.
            flag = f"{record.backend} serves after a {record.why} but failed validation: " \
                   f"{'; '.join(record.shortfalls)}"
            logger.warning("%s", flag)
            self.flagged = [*self.flagged[-4:], flag]
        else:
            logger.info("validation of %s (%s): %s", record.backend, record.why, record.line())
        try:
            self._on_result(record)
        except Exception:
            logger.exception("recording a validation failed")

    def snapshot(self) -> dict[str, Any]:
        """For ``status()["validation"]``."""
        pick = {name: self.latest[name].as_dict() for name in (self.serving, self.previous)
                if name is not None and name in self.latest}
        return {"cases": len(self.cases), "gate": self.gate_text or None,
                "serving": self.serving, "previous": self.previous,
                "backends": pick,
                "pending": None if self.pending is None else self.pending.as_dict(),
                "refused": None if self.refused is None else self.refused[1],
                "flagged": list(self.flagged)}

    async def aclose(self) -> None:
        self.latest.clear()  # every running validation stops at its next case
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
