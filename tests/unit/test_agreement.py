"""Agreement statistics of a panel (issue 23) against hand-computed and published values."""

from __future__ import annotations

import random

import pytest

from ray_judge.quality.agreement import (
    agreement,
    effective_judges,
    krippendorff_interval,
    mean_deviation,
    pairwise_spearman,
)

N = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12
# units example with missing values: interval alpha = 0.849.
CODERS = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
          "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
          "C": [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
          "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]}


def rows_of(coders):
    return [{k: v for k, v in zip(coders, unit, strict=True) if v is not None}
            for unit in zip(*coders.values(), strict=True)]


def test_krippendorff_alpha_matches_the_published_example() -> None:
    assert krippendorff_interval(rows_of(CODERS)) == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_by_hand() -> None:
    # values 0,0 | 1,1 | 0,1: D_o = 2/6, D_e = 18/30, alpha = 1 - (1/3)/(3/5) = 4/9
    rows = [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 1.0}]
    assert krippendorff_interval(rows) == pytest.approx(4 / 9)
    assert krippendorff_interval([{"a": 1.0, "b": 1.0}] * 3) is None  # nothing to expect
    assert krippendorff_interval([{"a": 1.0}]) is None


def test_a_member_that_always_agrees_and_one_that_is_random() -> None:
    rng = random.Random(7)
    truth = [rng.random() for _ in range(400)]
    rows = [{"a": t, "twin": t, "coin": rng.random()} for t in truth]
    members = ["a", "twin", "coin"]
    rho = pairwise_spearman(rows, members)
    assert rho[("a", "twin")] == pytest.approx(1.0)
    assert abs(rho[("a", "coin")]) < 0.15 and abs(rho[("twin", "coin")]) < 0.15
    # two identical judges and an independent one: 9 / (3 + 2 (1 + r^2 + r^2)) ~ 1.8
    assert effective_judges(members, rho) == pytest.approx(1.8, abs=0.05)
    deviation = mean_deviation(rows, truth, members)
    assert deviation["a"] == 0 and deviation["twin"] == 0
    assert deviation["coin"] == pytest.approx(1 / 3, abs=0.05)  # E|U - V| for uniforms
    report = agreement(rows, truth, members)
    assert report["n"] == 400 and report["spearman"]["a ~ twin"] == 1.0
    assert 0.2 < report["alpha"] < 0.6


def test_effective_judges_by_hand() -> None:
    members = ["a", "b", "c"]
    assert effective_judges(members, {("a", "b"): 0.0, ("a", "c"): 0.0,
                                      ("b", "c"): 0.0}) == 3.0
    assert effective_judges(members, {("a", "b"): 1.0, ("a", "c"): 1.0,
                                      ("b", "c"): 1.0}) == 1.0
    # r = 0.5 everywhere: 9 / (3 + 2 * 3 * 0.25) = 2
    assert effective_judges(members, {("a", "b"): 0.5, ("c", "a"): 0.5,
                                      ("b", "c"): 0.5}) == 2.0
    assert effective_judges(members, {("a", "b"): None, ("a", "c"): 0.0,
                                      ("b", "c"): 0.0}) is None


def test_a_failed_member_is_missing_not_a_number() -> None:
    rows = [{"a": 0.1, "b": 0.2}, {"a": 0.9}, {"a": 0.5, "b": 0.6}, {"a": 0.3, "b": 0.2}]
    # over the three rows both scored: ranks (1, 3, 2) and (1.5, 3, 1.5):
    # cov 1.5, variances 2 and 1.5 -> rho = 1.5 / sqrt(3) = sqrt(3) / 2
    assert pairwise_spearman(rows, ["a", "b"])[("a", "b")] == pytest.approx(3 ** 0.5 / 2)
    assert mean_deviation(rows, [0.15, 0.9, None, 0.25], ["a", "b"]) == pytest.approx(
        {"a": (0.05 + 0.0 + 0.05) / 3, "b": (0.05 + 0.05) / 2})
