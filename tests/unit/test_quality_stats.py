"""The eval's statistics against reference values.

scipy is not a dependency here; the references are scipy's documented answers
(``scipy.stats.kendalltau`` and ``spearmanr`` examples), numpy's (``corrcoef``,
``percentile``: numpy comes with matplotlib, the test extra) and hand-computed ones,
each worked out in a comment.
"""

from __future__ import annotations

import numpy as np
import pytest

from ray_judge.quality.stats import cohen_kappa, kendall_tau, pearson, percentile, spearman


def test_kendall_tau_b_matches_scipys_documented_example_with_ties():
    # scipy.stats.kendalltau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]).statistic
    assert kendall_tau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(
        -0.47140452079103173)


def test_kendall_tau_by_hand():
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # pairs (1,2) C, (1,3) C, (2,3) tie in y only: (2 - 0) / sqrt(3 * 2)
    assert kendall_tau([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / 6 ** 0.5)


@pytest.mark.parametrize(("xs", "ys"), [([], []), ([1], [2]), ([1, 1, 1], [1, 2, 3]),
                                        ([1, 2, 3], [5, 5, 5])])
def test_undefined_correlations_are_none_not_a_number(xs, ys):
    assert kendall_tau(xs, ys) is None
    assert pearson(xs, ys) is None
    assert spearman(xs, ys) is None


def test_spearman_matches_scipys_documented_example():
    # scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)


@pytest.mark.parametrize(("xs", "ys"), [
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
    ([0.1, 0.4, 0.4, 0.9], [3, 1, 2, 10]),
    ([2, 4, 6], [1, 2, 3.5]),
])
def test_pearson_matches_numpy(xs, ys):
    assert pearson(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1])


def test_cohen_kappa_by_hand():
    expected = [True, True, False, False, True, False]
    got = [True, False, False, False, True, True]
    # observed 4/6; each rater says yes half the time, chance = 0.5: (2/3 - 1/2) / (1/2)
    assert cohen_kappa(expected, got) == pytest.approx(1 / 3)
    assert cohen_kappa(expected, expected) == 1.0
    assert cohen_kappa(expected, [not e for e in expected]) == -1.0


def test_cohen_kappa_is_undefined_when_both_raters_never_vary():
    assert cohen_kappa([True, True], [True, True]) is None
    assert cohen_kappa([], []) is None
    # one rater constant, the other not: chance agreement 0.5, observed 0.5, kappa 0
    assert cohen_kappa([True, True], [True, False]) == 0.0


@pytest.mark.parametrize("values", [[3.0], [1.0, 2.0], [0.2, 5.0, 1.0, 1.0, 9.5, 0.1]])
@pytest.mark.parametrize("q", [0, 50, 95, 100])
def test_percentile_matches_numpys_linear_interpolation(values, q):
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_nothing_is_none_and_q_is_checked():
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="q must be within"):
        percentile([1.0], 101)
