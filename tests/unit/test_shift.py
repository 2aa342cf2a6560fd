"""The pure pieces of switch-aware rewards: the reservoir, the shift statistics and the
quantile map, table-tested, with hypothesis properties for the map."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ray_judge.shift.calibration import QuantileMap
from ray_judge.shift.reservoir import Reservoir, Sample
from ray_judge.shift.stats import ShiftStats, average_ranks, discordant_share, spearman
from ray_judge.verdict import JudgeRequest

# ---------------------------------------------------------------------------- reservoir


def req(i: int) -> JudgeRequest:
    return JudgeRequest(f"p{i}", f"r{i}", metadata={"id": i})


def test_reservoir_fills_then_keeps_its_capacity() -> None:
    res = Reservoir(3, rng=random.Random(1))
    assert [res.offer(req(i), "a", 0.5) for i in range(3)] == [0, 1, 2]
    for i in range(3, 50):
        slot = res.offer(req(i), "a", 0.5)
        assert slot is None or 0 <= slot < 3
    assert len(res) == 3 and res.seen == 50
    assert all(s.request.metadata is None for s in res.samples)  # the caller's, not kept


def test_reservoir_is_uniform_over_the_run() -> None:
    """Algorithm R: each of 100 offered requests ends up kept with probability 10/100."""
    kept: Counter[int] = Counter()
    rng = random.Random(7)
    trials = 600
    for _ in range(trials):
        res = Reservoir(10, rng=rng)
        for i in range(100):
            res.offer(req(i), "a", 0.1)
        kept.update(int(s.request.prompt[1:]) for s in res.samples)
    early = sum(kept[i] for i in range(50)) / (trials * 10)
    assert 0.45 < early < 0.55, early  # first half of the run as likely as the second
    assert all(25 < kept[i] < 100 for i in range(100)), kept.most_common(3)  # ~60 each


def test_reservoir_of_zero_keeps_nothing_and_bad_capacity_is_named() -> None:
    res = Reservoir(0)
    assert res.offer(req(1), "a", 0.5) is None and len(res) == 0
    with pytest.raises(ValueError, match="capacity must be an integer >= 0, got -1"):
        Reservoir(-1)


def test_reservoir_pairs_and_missing() -> None:
    res = Reservoir(5)
    for i in range(4):
        res.offer(req(i), "a", i / 10)
    res.samples[0].scores["b"] = 0.9
    res.samples[2].scores["b"] = 0.7
    assert res.pairs("a", "b") == [(0.0, 0.9), (0.2, 0.7)]
    assert [s.request.prompt for s in res.missing("b")] == ["p1", "p3"]
    assert res.slot_of(res.samples[2]) == 2
    assert res.slot_of(Sample(req(9), {})) is None


def test_sample_round_trips_through_json() -> None:
    sample = Sample(JudgeRequest("p", "r", reference="g"), {"a": 0.25, "b": 1.0})
    assert Sample.from_dict(sample.to_dict()) == sample


# ------------------------------------------------------------------------------- shift


@pytest.mark.parametrize(("values", "ranks"), [
    ([], []),
    ([0.5], [1.0]),
    ([0.3, 0.1, 0.2], [3.0, 1.0, 2.0]),
    ([0.1, 0.1, 0.2], [1.5, 1.5, 3.0]),
    ([0.4, 0.4, 0.4], [2.0, 2.0, 2.0]),
])
def test_average_ranks(values, ranks) -> None:
    assert average_ranks(values) == ranks


@pytest.mark.parametrize(("xs", "ys", "rho"), [
    ([0.1, 0.2, 0.3], [0.5, 0.6, 0.9], 1.0),
    ([0.1, 0.2, 0.3], [0.9, 0.6, 0.5], -1.0),
    ([0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4], 0.8),  # one swap of neighbours
    ([0.1], [0.2], None),  # too few
    ([0.1, 0.2], [0.5, 0.5], None),  # one side constant
])
def test_spearman(xs, ys, rho) -> None:
    got = spearman(xs, ys)
    assert got == rho if rho is None else got == pytest.approx(rho)


def test_spearman_with_ties_matches_the_textbook_value() -> None:
    # scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) == 0.9486832980505139
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505139)


@pytest.mark.parametrize(("xs", "ys", "share"), [
    ([0.1, 0.2, 0.3], [0.2, 0.3, 0.4], 0.0),
    ([0.1, 0.2, 0.3], [0.4, 0.3, 0.2], 1.0),
    ([0.1, 0.2, 0.3], [0.2, 0.2, 0.4], 0.0),  # a new tie is not a flip
    ([0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4], 1 / 6),
    ([0.5, 0.5], [0.1, 0.9], None),  # the old backend ordered nothing
])
def test_discordant_share(xs, ys, share) -> None:
    got = discordant_share(xs, ys)
    assert got == share if share is None else got == pytest.approx(share)


def test_shift_stats_of_a_constant_shift() -> None:
    pairs = [(x / 10, min(1.0, x / 10 + 0.3)) for x in range(8)]
    stats = ShiftStats.of(pairs)
    assert stats.n == 8
    assert stats.mean == pytest.approx(0.3) and stats.median == pytest.approx(0.3)
    assert stats.spearman == pytest.approx(1.0) and stats.discordant == 0.0
    assert stats.to_dict()["mean"] == 0.3
    assert ShiftStats.of([]) == ShiftStats(0, None, None, None, None)


# --------------------------------------------------------------------------- calibration


def test_quantile_map_undoes_a_constant_shift() -> None:
    pairs = [(x / 100, x / 100 + 0.3) for x in range(0, 71)]
    qmap = QuantileMap.fit(pairs)
    for ref, new in pairs:
        assert qmap(new) == pytest.approx(ref, abs=1e-9)
    assert qmap.n == 71


@pytest.mark.parametrize(("pairs", "x", "y"), [
    ([(0.2, 0.5)], 0.5, 0.2),  # one pair: its own score maps onto the reference's
    ([(0.2, 0.5)], 0.0, 0.0),  # anchors
    ([(0.2, 0.5)], 1.0, 1.0),
    ([(0.2, 0.5)], 0.75, 0.6),  # linear between the knot and the anchor
    ([(0.0, 0.0), (1.0, 1.0)], 0.5, 0.5),
    ([(0.6, 0.0), (0.8, 0.0), (0.9, 1.0)], 0.0, 0.7),  # ties: mid-rank quantile
    ([(0.6, 0.0), (0.8, 0.0), (0.9, 1.0)], 1.0, 0.9),
    ([(0.6, 0.0), (0.8, 0.0), (0.9, 1.0)], 2.0, 0.9),  # clamped into [0, 1] first
])
def test_quantile_map_table(pairs, x, y) -> None:
    assert QuantileMap.fit(pairs)(x) == pytest.approx(y)


@pytest.mark.parametrize(("pairs", "message"), [
    ([], "at least one"),
    ([(0.5, 1.5)], r"within \[0, 1\], got pair \(0.5, 1.5\)"),
])
def test_quantile_map_rejects_bad_pairs(pairs, message) -> None:
    with pytest.raises(ValueError, match=message):
        QuantileMap.fit(pairs)


unit = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(unit, unit), min_size=1, max_size=60), st.lists(unit, max_size=40))
def test_quantile_map_is_monotone_and_stays_in_the_unit_interval(pairs, xs) -> None:
    qmap = QuantileMap.fit(pairs)
    probes = sorted({*xs, 0.0, 1.0, *(b for _, b in pairs)})
    mapped = [qmap(x) for x in probes]
    assert all(0.0 <= y <= 1.0 for y in mapped)
    assert all(a <= b for a, b in itertools.pairwise(mapped)), (probes, mapped)


def test_quantile_map_stays_monotone_between_subnormal_knots() -> None:
    """Found by hypothesis: interpolating towards a knot of 5e-324 overshot it by one ulp
    (0.5625 mapped to 1e-323, 0.625 to 5e-324)."""
    qmap = QuantileMap.fit([(0.0, 0.625), (1.0, 0.625), (5e-324, 0.625)])
    mapped = [qmap(x) for x in (0.0, 0.5625, 0.625, 1.0)]
    assert mapped == sorted(mapped) and mapped[1] <= qmap(0.625) == 5e-324


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(unit, unit), min_size=2, max_size=60),
       st.lists(st.tuples(unit, unit), min_size=1, max_size=30))
def test_quantile_map_refit_with_more_pairs_stays_monotone(pairs, more) -> None:
    first, refit = QuantileMap.fit(pairs), QuantileMap.fit(pairs + more)
    assert refit.n == first.n + len(more)
    for qmap in (first, refit):
        assert all(a <= b for a, b in zip(qmap.ys, qmap.ys[1:], strict=False))
        assert all(a < b for a, b in zip(qmap.xs, qmap.xs[1:], strict=False))
