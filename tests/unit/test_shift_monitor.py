"""The shift monitor and the dispatcher's spare-capacity path, without Ray: a fake
``send`` scores the same requests by two known functions, one per backend."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3

import pytest

from ray_judge.pool.cache import VerdictCache
from ray_judge.pool.dispatch import Dispatcher
from ray_judge.shift.monitor import ShiftMonitor
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest, Status, Verdict

OLD, NEW = "litellm:anthropic/old", "litellm:openai/new"


def old_score(i: int) -> float:
    return ((i * 37) % 71) / 100


def new_score(i: int) -> float:
    return min(1.0, old_score(i) + 0.3)


def request(i: int) -> JudgeRequest:
    return JudgeRequest("p", f"answer-{i:06d}", metadata=i)


def verdict(spec: str, r: JudgeRequest) -> Verdict:
    i = int(re.findall(r"\d{6}", r.response)[0])
    score = old_score(i) if spec == OLD else new_score(i)
    return Verdict(score=score, status=Status.OK, backend=spec, metadata=r.metadata)


class Backends:
    """Fake workers: every call recorded as (spec, number of requests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.active = self.peak = 0

    async def send(self, worker: int, spec: str, requests: list[JudgeRequest]) -> list[Verdict]:
        self.calls.append((spec, len(requests)))
        self.active += len(requests)
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.001)
        self.active -= len(requests)
        return [verdict(spec, r) for r in requests]


def monitor(backends: Backends, serving: list[str], **kw) -> tuple[ShiftMonitor, Dispatcher]:
    dispatcher = Dispatcher(num_workers=2, send=backends.send,
                            route=lambda: BackendSpec.parse(serving[0]),
                            limit_for=lambda spec: 40)
    options = {"capacity": 50, "share": 0.1, "warn": 0.1, "min_pairs": 20, "reference": None,
               "calibration_of": lambda judge: "quantile"}
    options.update(kw)
    return ShiftMonitor(limit_for=lambda spec: 40, send_spare=dispatcher.send_spare,
                        serving=lambda: serving[0], **options), dispatcher


async def _until(predicate, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


def test_a_switch_re_judges_the_reservoir_on_the_new_backend_only(caplog) -> None:
    async def main() -> None:
        backends, serving = Backends(), [OLD]
        shift, _ = monitor(backends, serving)
        for i in range(100):
            shift.observe(request(i), verdict(OLD, request(i)))
        # Before any pairs, the new backend's verdicts are raw and say so.
        first = shift.calibrate(request(500), verdict(NEW, request(500)))
        assert first.raw_score is None and first.score == new_score(500)
        assert first.extra["calibration"] == {"calibrated": False, "reference": OLD,
                                              "pairs": 0, "needed": 20}
        serving[0] = NEW
        with caplog.at_level(logging.INFO, logger="ray_judge.shift.monitor"):
            shift.switched(OLD, NEW)
            await _until(lambda: shift.reports["default"].done)
        report = shift.snapshot()["default"]
        assert report["n"] == report["judged"] == 50 and report["failed"] == 0
        assert report["mean"] == pytest.approx(0.3, abs=0.02)
        assert report["spearman"] > 0.95 and report["discordant"] < 0.05
        assert {spec for spec, _ in backends.calls} == {NEW}  # never the old one
        assert backends.peak == 4  # 10% of the in-flight limit of 40
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        infos = [r for r in caplog.records if r.levelno == logging.INFO]
        assert len(warnings) == 1 and "the reward moved" in warnings[0].getMessage()
        assert len(infos) == 1 and f"{NEW} vs {OLD} on 50 pairs: mean +0.3" in infos[0].getMessage()
        # Enough pairs: the new backend's scores come back on the old one's scale.
        later = shift.calibrate(request(7), verdict(NEW, request(7)))
        assert later.raw_score == new_score(7)
        assert later.score == pytest.approx(old_score(7), abs=0.02)
        assert later.extra["calibration"]["reference"] == OLD
        # The reference backend's own verdicts are left alone.
        assert shift.calibrate(request(7), verdict(OLD, request(7))) == verdict(OLD, request(7))

    asyncio.run(main())


def test_the_re_judging_waits_while_training_requests_are_queued() -> None:
    async def main() -> None:
        backends, serving = Backends(), [OLD]
        shift, dispatcher = monitor(backends, serving)
        for i in range(50):
            shift.observe(request(i), verdict(OLD, request(i)))
        serving[0] = NEW
        dispatcher._queue.append(object())  # a training request waiting for a slot
        shift.switched(OLD, NEW)
        await asyncio.sleep(0.3)
        assert backends.calls == [] and shift.reports["default"].judged == 0
        dispatcher._queue.clear()
        await _until(lambda: shift.reports["default"].done)
        assert shift.reports["default"].judged == 50

    asyncio.run(main())


def test_the_re_judging_stops_when_the_backend_changes_again() -> None:
    async def main() -> None:
        backends, serving = Backends(), [OLD]
        shift, _ = monitor(backends, serving, share=0.025)  # one request per call
        for i in range(50):
            shift.observe(request(i), verdict(OLD, request(i)))
        serving[0] = NEW
        shift.switched(OLD, NEW)
        await _until(lambda: shift.reports["default"].judged >= 3)
        serving[0] = OLD
        await _until(lambda: shift.reports["default"].stopped is not None)
        calls = len(backends.calls)
        await asyncio.sleep(0.1)
        assert len(backends.calls) == calls
        assert "no longer serves" in shift.snapshot()["default"]["line"]

    asyncio.run(main())


def test_calibration_off_leaves_verdicts_alone_and_failures_are_never_sampled() -> None:
    async def main() -> None:
        backends, serving = Backends(), [OLD]
        shift, _ = monitor(backends, serving, calibration_of=lambda judge: "none")
        shift.observe(request(1), Verdict.failure(Status.TIMEOUT, "slow", backend=OLD))
        shift.observe(request(2), verdict(OLD, request(2)).with_(cached=True))
        assert shift.reservoirs == {}
        shift.observe(request(3), verdict(OLD, request(3)))
        v = verdict(NEW, request(3))
        assert shift.calibrate(request(3), v) is v

    asyncio.run(main())


def test_the_reservoir_survives_a_restart_in_the_cache_file_unless_the_judge_changed(
        tmp_path, caplog) -> None:
    async def main(path, version: str) -> dict:
        cache = VerdictCache(10, path)
        shift, _ = monitor(Backends(), [OLD], store=cache, capacity=5,
                           version_of=lambda judge: version)
        restored = shift.reservoir_snapshot()
        if not shift.reservoirs:
            for i in range(12):
                shift.observe(request(i), verdict(OLD, request(i)))
        snap = shift.reservoir_snapshot()
        samples = [s.to_dict() for s in shift.reservoirs["default"].samples]
        await shift.aclose()
        cache.close()
        return {"restored": restored, "snap": snap, "samples": samples}

    path = tmp_path / "cache.sqlite"
    first = asyncio.run(main(path, "v1"))
    assert first["restored"] == {}
    assert first["snap"] == {"default": {"entries": 5, "seen": 12, "capacity": 5}}
    again = asyncio.run(main(path, "v1"))
    assert again["restored"] == first["snap"] and again["samples"] == first["samples"]
    rows = sqlite3.connect(path).execute("SELECT judge, COUNT(*) FROM reservoir "
                                         "GROUP BY judge").fetchall()
    assert rows == [("default@v1", 5)]
    # The judge's definition changed: its old scores are not this judge's; a new sample.
    with caplog.at_level(logging.INFO, logger="ray_judge.shift.monitor"):
        changed = asyncio.run(main(path, "v2"))
    assert changed["restored"] == {} and "version v1, now v2" in caplog.text
    rows = sqlite3.connect(path).execute("SELECT judge, COUNT(*) FROM reservoir "
                                         "GROUP BY judge").fetchall()
    assert rows == [("default@v2", 5)]


def test_send_spare_uses_only_free_slots_and_none_while_requests_wait() -> None:
    async def main() -> None:
        backends = Backends()
        d = Dispatcher(num_workers=1, send=backends.send, route=lambda: BackendSpec.parse(NEW),
                       limit_for=lambda spec: 3)
        spec = BackendSpec.parse(NEW)
        got = await d.send_spare(spec, [request(i) for i in range(5)])
        assert [v.metadata for v in got] == [0, 1, 2]  # the limit, not more
        assert d.in_flight() == {NEW: 0}
        d._queue.append(object())
        assert await d.send_spare(spec, [request(9)]) == []

    asyncio.run(main())


def test_status_prints_the_shift_in_one_line_per_judge() -> None:
    from ray_judge.cli import shift_lines

    status = {
        "shift": {"default": {"line": "since 14:02 B vs A on 180 pairs: mean +0.31, "
                                      "Spearman 0.72 (median +0.30, order flips 9%)"},
                  "agent": {"line": "since 14:05 B vs A on 12 pairs: ..."}},
        "calibration": {"default": {"mode": "quantile", "reference": "A",
                                    "maps": {"B": {"pairs": 180, "fitted_at": 1.0}},
                                    "min_pairs": 100}},
    }
    assert shift_lines(status) == [
        "  shift:    judge agent since 14:05 B vs A on 12 pairs: ...",
        "  shift:    since 14:02 B vs A on 180 pairs: mean +0.31, Spearman 0.72 "
        "(median +0.30, order flips 9%)",
        "  calibrate: quantile onto A; maps: B on 180 pairs",
    ]
    assert shift_lines({}) == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"score": 0.5, "status": "ok", "raw_score": 1.5}, "raw_score must be within"),
    ({"score": None, "status": "timeout", "raw_score": 0.5}, "only on an ok Verdict"),
])
def test_raw_score_is_checked(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        Verdict(**fields)


def test_a_judge_definition_asks_for_calibration(tmp_path) -> None:
    from ray_judge.errors import JudgeDefinitionError
    from ray_judge.judging.catalog import load_judges_file
    from ray_judge.judging.definition import JudgeDefinition

    path = tmp_path / "judges.toml"
    path.write_text('[judges.graded]\ncalibrate = "quantile"\n[judges.plain]\n')
    graded, plain = sorted(load_judges_file(path), key=lambda d: d.name)
    assert (graded.calibrate, plain.calibrate) == ("quantile", None)
    assert graded.version == plain.version  # it maps the served score, not the judgement
    with pytest.raises(JudgeDefinitionError, match="calibrate must be one of none, quantile, "
                                                   "got 'linear'"):
        JudgeDefinition(name="x", calibrate="linear")
