"""How much the reward moved when the serving backend changed, and (opt-in) the fix.

The judge actor feeds every ok verdict it serves into a per-judge :class:`Reservoir`
(a uniform sample of the run, each entry with the score of the backend that gave it).
When the backend that serves changes (a person's switch, the override file, a failover
or its return), a background task re-judges the reservoir's requests on the new
backend, on spare capacity only (:meth:`Dispatcher.send_spare`: nothing queued, at most
``shift_share`` of the backend's in-flight limit at a time). The old backend's scores are
already in the reservoir, so the old backend, which may be out of quota, is never called.

From the pairs it keeps a :class:`ShiftReport` per judge, updated as pairs arrive: mean
and median shift, Spearman's rho, the share of order flips. It logs a WARNING once when
the mean shift is large, and INFO when done.

Calibration (``calibrate = "quantile"``): once ``calibration_min_pairs`` pairs of the
reference backend and the serving one exist, the serving backend's verdicts get ``score``
mapped onto the reference's scale (:class:`QuantileMap`) and ``raw_score`` with their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..spec import BackendSpec
from ..verdict import JudgeRequest, Verdict
from .calibration import QuantileMap
from .reservoir import Reservoir, Sample
from .stats import ShiftStats

__all__ = ["DEFAULT_JUDGE", "SampleStore", "ShiftMonitor", "ShiftReport", "judge_of"]


class SampleStore(Protocol):
    """Where the reservoirs outlive a restart: the pool's verdict cache and its SQLite file
    (:class:`ray_judge.pool.cache.VerdictCache`). A protocol, so this layer does not import
    the pool above it."""

    def save_sample(self, judge: str, slot: int, sample: dict[str, Any], seen: int) -> None: ...

    def save_seen(self, judge: str, seen: int) -> None: ...

    def drop_samples(self, judge: str) -> None: ...

    def load_samples(self) -> dict[str, tuple[int, list[dict[str, Any]]]]: ...

logger = logging.getLogger(__name__)

DEFAULT_JUDGE = "default"
#: Seconds between looks at the queue while training requests keep it busy.
_POLL_S = 0.1
#: Pairs before a large shift is worth a WARNING (fewer are noise).
_WARN_AFTER = 30
#: Newest (reference, new) pairs a calibration map is fitted on.
_MAX_CALIBRATION_PAIRS = 2000

SendSpare = Callable[[BackendSpec, Sequence[JudgeRequest]], Awaitable[Sequence[Verdict]]]


def judge_of(item: JudgeRequest | Verdict) -> str:
    """The judge definition's name on a request or verdict (``default`` when it has none)."""
    return getattr(item, "judge", None) or DEFAULT_JUDGE


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _plain(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@dataclass
class ShiftReport:
    """The measurement that began when ``new`` took over from ``old`` for one judge."""

    judge: str
    old: str
    new: str
    since: float
    todo: int
    judged: int = 0
    failed: int = 0
    done: bool = False
    stopped: str | None = None
    #: (old score, new score) of the requests both scored; kept here, not read back from
    #: the reservoir, which live traffic keeps refreshing
    pairs: list[tuple[float, float]] = field(default_factory=list)
    stats: ShiftStats = field(default_factory=lambda: ShiftStats.of([]))
    warned: bool = False

    def line(self) -> str:
        """One line for a person: ``since 14:02 NEW vs OLD on 180 pairs: mean +0.31, ...``."""
        s = self.stats
        text = (f"since {time.strftime('%H:%M', time.localtime(self.since))} {self.new} vs "
                f"{self.old} on {s.n} pairs: mean {_signed(s.mean)}, Spearman {_plain(s.spearman)}"
                f" (median {_signed(s.median)}, order flips "
                f"{'n/a' if s.discordant is None else f'{s.discordant:.0%}'}")
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        elif not self.done:
            text += f"; {self.todo - self.judged - self.failed} left"
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "old": self.old, "new": self.new, "since": self.since,
                "todo": self.todo, "judged": self.judged, "failed": self.failed,
                "done": self.done, "stopped": self.stopped, **self.stats.to_dict(),
                "line": self.line()}


@dataclass
class _Calibration:
    qmap: QuantileMap
    fitted_at: float
    reference: str


class ShiftMonitor:
    """Reservoirs, shift reports and calibration maps of the judge actor.

    Args:
        capacity: reservoir entries per judge (0: no reservoir, no measurement).
        share: share of a backend's in-flight limit the re-judging may use at once.
        warn: absolute mean shift that is logged as a WARNING.
        min_pairs: pairs needed before calibrated scores are served.
        reference: the backend calibration maps onto (None: the first that served).
        calibration_of: a judge's calibration, ``"none"`` or ``"quantile"``.
        limit_for: a backend's global in-flight limit.
        send_spare: :meth:`Dispatcher.send_spare`.
        serving: the backend new requests go to now (None while a probe decides).
        store: the verdict cache, whose SQLite file (if any) keeps the reservoirs.
        on_report: called with each updated report (metrics).
        version_of: a judge's ``judge_version``; a sample kept in the file under another
            version is dropped at start (its scores came from a different judge).
    """

    def __init__(self, *, capacity: int, share: float, warn: float, min_pairs: int,
                 reference: str | None, calibration_of: Callable[[str], str],
                 limit_for: Callable[[BackendSpec], int], send_spare: SendSpare,
                 serving: Callable[[], str | None], store: SampleStore | None = None,
                 on_report: Callable[[ShiftReport], None] = lambda report: None,
                 version_of: Callable[[str], str | None] = lambda judge: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.capacity, self.share, self.warn, self.min_pairs = capacity, share, warn, min_pairs
        self._configured_reference = reference
        self._calibration_of = calibration_of
        self._limit_for, self._send_spare, self._serving = limit_for, send_spare, serving
        self._store, self._on_report, self._clock = store, on_report, clock
        self._version_of = version_of
        self.reservoirs: dict[str, Reservoir] = {}
        self.reference: dict[str, str] = {}
        self.reports: dict[str, ShiftReport] = {}
        self._maps: dict[tuple[str, str], _Calibration] = {}
        self._cal_pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._restore()

    # -- the judge's calls -------------------------------------------------------------

    def observe(self, request: JudgeRequest, verdict: Verdict) -> None:
        """Offer a served ok verdict's request to its judge's reservoir."""
        if not verdict.ok or verdict.cached or verdict.backend is None or self.capacity == 0:
            return
        judge = judge_of(request)
        self.reference.setdefault(judge, self._configured_reference or verdict.backend)
        reservoir = self._reservoir(judge)
        assert verdict.score is not None
        slot = reservoir.offer(request, verdict.backend, verdict.score)
        if slot is not None and self._store is not None:
            self._store.save_sample(self._stored_as(judge), slot,
                                    reservoir.samples[slot].to_dict(), reservoir.seen)

    def switched(self, old: str, new: str) -> None:
        """The serving backend changed: measure the shift in the background."""
        if self.capacity == 0:
            return
        if self._task is not None and not self._task.done():
            self._task.cancel()
        now = self._clock()
        for judge, reservoir in self.reservoirs.items():
            todo = len(reservoir.missing(new))
            known = reservoir.pairs(old, new)
            if todo or known:
                self.reports[judge] = report = ShiftReport(judge, old, new, now, todo,
                                                           pairs=known)
                reference = self.reference.get(judge)
                if reference not in (None, new) and (judge, new) not in self._cal_pairs:
                    self._cal_pairs[(judge, new)] = reservoir.pairs(reference, new)
                self._update(report, force=True)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (start-up): nothing has been served to re-judge
            return
        self._task = loop.create_task(self._measure(new), name="ray_judge-shift")

    def calibrate(self, request: JudgeRequest, verdict: Verdict) -> Verdict:
        """The verdict on its judge's reference scale, when calibration is on for it."""
        judge = judge_of(request)
        if not verdict.ok or verdict.score is None or self._calibration_of(judge) == "none":
            return verdict
        reference = self.reference.get(judge)
        if reference is None or verdict.backend in (None, reference):
            return verdict
        fitted = self._maps.get((judge, verdict.backend))
        if fitted is None:
            note = {"calibrated": False, "reference": reference,
                    "pairs": len(self._cal_pairs.get((judge, verdict.backend), ())),
                    "needed": self.min_pairs}
            return verdict.with_(extra={**verdict.extra, "calibration": note})
        note = {"calibrated": True, "map": "quantile", "reference": fitted.reference,
                "pairs": fitted.qmap.n, "fitted_at": fitted.fitted_at}
        return verdict.with_(score=fitted.qmap(verdict.score), raw_score=verdict.score,
                             extra={**verdict.extra, "calibration": note})

    def snapshot(self) -> dict[str, Any]:
        """Per judge: the latest report (``status()["shift"]``)."""
        return {judge: report.to_dict() for judge, report in list(self.reports.items())}

    def reservoir_snapshot(self) -> dict[str, Any]:
        return {judge: {"entries": len(r), "seen": r.seen, "capacity": r.capacity}
                for judge, r in list(self.reservoirs.items())}

    def calibration_snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for judge, reference in list(self.reference.items()):
            mode = self._calibration_of(judge)
            if mode == "none":
                continue
            maps = {backend: {"pairs": c.qmap.n, "fitted_at": c.fitted_at}
                    for (j, backend), c in list(self._maps.items()) if j == judge}
            out[judge] = {"mode": mode, "reference": reference, "maps": maps,
                          "min_pairs": self.min_pairs}
        return out

    def pairs(self) -> dict[str, Any]:
        """Per judge with a report: its pairs and fitted map, for the shift plot."""
        out = {}
        for judge, report in list(self.reports.items()):
            fitted = self._maps.get((judge, report.new))
            out[judge] = {
                **report.to_dict(),
                "pairs": list(report.pairs),
                "map": None if fitted is None else {
                    "reference": fitted.reference, "xs": list(fitted.qmap.xs),
                    "ys": list(fitted.qmap.ys), "pairs": fitted.qmap.n},
            }
        return out

    async def aclose(self) -> None:
        """Stop measuring; keep each reservoir's count of requests seen in the file."""
        if self._task is not None:
            self._task.cancel()
        if self._store is not None:
            for judge, reservoir in list(self.reservoirs.items()):
                self._store.save_seen(self._stored_as(judge), reservoir.seen)

    # -- the background measurement ----------------------------------------------------

    async def _measure(self, new: str) -> None:
        spec = BackendSpec.parse(new)
        lanes = max(1, int(self.share * self._limit_for(spec)))
        try:
            for judge, report in list(self.reports.items()):
                if report.new == new and not report.done:
                    await self._rejudge(spec, lanes, report, self.reservoirs[judge])
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must never touch serving
            logger.exception("measuring the score shift after the switch to %s failed", new)

    async def _rejudge(self, spec: BackendSpec, lanes: int, report: ShiftReport,
                       reservoir: Reservoir) -> None:
        """``lanes`` requests in flight at a time, each sent when a slot is spare."""
        todo: deque[Sample] = deque(reservoir.missing(report.new))

        async def lane() -> None:
            while todo and self._serving() == report.new:
                sample = todo.popleft()
                verdicts = list(await self._send_spare(spec, [sample.request]))
                if not verdicts:  # training requests are waiting: let them have it
                    todo.appendleft(sample)
                    await asyncio.sleep(_POLL_S)
                    continue
                self._record(report, reservoir, sample, verdicts[0])

        await asyncio.gather(*(lane() for _ in range(min(lanes, len(todo)))))
        if todo:
            report.stopped = f"{report.new} no longer serves"
            self._update(report, force=True)
            return
        report.done = True
        self._update(report, force=True)
        logger.info("score shift of judge %s, %s", report.judge, report.line())

    def _record(self, report: ShiftReport, reservoir: Reservoir, sample: Sample,
                verdict: Verdict) -> None:
        if not (verdict.ok and verdict.score is not None):
            report.failed += 1
            return
        report.judged += 1
        sample.scores[report.new] = verdict.score
        if report.old in sample.scores:
            report.pairs.append((sample.scores[report.old], verdict.score))
        reference = self.reference.get(report.judge)
        if reference in sample.scores and reference != report.new:
            calibration = self._cal_pairs.setdefault((report.judge, report.new), [])
            calibration.append((sample.scores[reference], verdict.score))
            del calibration[:-_MAX_CALIBRATION_PAIRS]
        self._persist(report.judge, reservoir, sample)
        self._update(report)

    def _update(self, report: ShiftReport, *, force: bool = False) -> None:
        # The statistics cost O(n^2) (order flips): recomputed when the pairs grew by a
        # tenth, not on every pair.
        if not force and len(report.pairs) < report.stats.n + max(1, report.stats.n // 10):
            return
        report.stats = ShiftStats.of(report.pairs)
        mean = report.stats.mean
        if (not report.warned and mean is not None and abs(mean) >= self.warn
                and report.stats.n >= min(_WARN_AFTER, report.todo)):
            report.warned = True
            logger.warning("the reward moved with the switch of judge %s: %s",
                           report.judge, report.line())
        self._refit(report.judge, report.new)
        self._on_report(report)

    def _refit(self, judge: str, backend: str) -> None:
        reference = self.reference.get(judge)
        pairs = self._cal_pairs.get((judge, backend), [])
        fitted = self._maps.get((judge, backend))
        if (reference not in (None, backend) and len(pairs) >= self.min_pairs
                and (fitted is None or fitted.qmap.n != len(pairs))):
            self._maps[(judge, backend)] = _Calibration(
                QuantileMap.fit(pairs), self._clock(), reference)

    # -- persistence -------------------------------------------------------------------

    def _reservoir(self, judge: str) -> Reservoir:
        reservoir = self.reservoirs.get(judge)
        if reservoir is None:
            reservoir = self.reservoirs[judge] = Reservoir(self.capacity)
        return reservoir

    def _persist(self, judge: str, reservoir: Reservoir, sample: Sample) -> None:
        slot = reservoir.slot_of(sample)
        if slot is not None and self._store is not None:
            self._store.save_sample(self._stored_as(judge), slot, sample.to_dict(),
                                    reservoir.seen)

    def _stored_as(self, judge: str) -> str:
        """The name a judge's sample is kept under in the file: with its version."""
        try:
            version = self._version_of(judge)
        except Exception:  # a judge the catalog no longer has
            version = None
        return judge if version is None else f"{judge}@{version}"

    def _restore(self) -> None:
        if self._store is None or self.capacity == 0:
            return
        for stored_as, (seen, rows) in self._store.load_samples().items():
            judge, _, version = stored_as.partition("@")
            if stored_as != self._stored_as(judge):
                logger.info("judge %s changed since its sample was kept (version %s, now %s): "
                            "starting a new sample", judge, version or "?",
                            self._version_of(judge) or "?")
                self._store.drop_samples(stored_as)
                continue
            samples = []
            for row in rows:
                try:
                    samples.append(Sample.from_dict(row))
                except (KeyError, TypeError, ValueError):
                    logger.warning("dropping an unreadable reservoir entry of judge %s", judge)
            self.reservoirs[judge] = Reservoir(self.capacity, seen=seen, samples=samples)
            logger.info("judge %s: %d reservoir entries restored from the cache file",
                        judge, len(samples))
