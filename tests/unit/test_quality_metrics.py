"""A backend's verdicts on labelled cases summed up: every figure on hand-made verdicts.

The cases are read from text by :func:`parse_cases` (the real reader); the verdicts are
built by hand, so every expected figure is worked out in the test.
"""

from __future__ import annotations

import json

import pytest

from ray_judge.config import JudgeConfig
from ray_judge.judging.catalog import JudgeCatalog
from ray_judge.quality.cases import parse_cases
from ray_judge.quality.metrics import METRICS, Judged, summarize
from ray_judge.verdict import Status, Verdict

CATALOG = JudgeCatalog.build(JudgeConfig())  # default judge: 0-10


def _cases(*labels: dict) -> list:
    return parse_cases([json.dumps({"prompt": "p", "response": f"r{i}", **label})
                        for i, label in enumerate(labels)], CATALOG)


def ok(score_on_10: float, **fields) -> Verdict:
    return Verdict(score=score_on_10 / 10, status=Status.OK, **fields)


def failed(status: Status = Status.PARSE_ERROR) -> Verdict:
    return Verdict.failure(status, "no score")


def judged(cases, verdicts, threshold=5.0):
    return [Judged(c, [v] if isinstance(v, Verdict) else v, threshold)
            for c, v in zip(cases, verdicts, strict=True)]


def test_numeric_labels_mae_and_correlations():
    cases = _cases({"label": 2}, {"label": 4}, {"label": 6}, {"label": 8})
    m = summarize(judged(cases, [ok(3), ok(4), ok(8), ok(7)]))
    assert m["cases"] == 4 and m["ok"] == 1.0 and m["parse_failures"] == 0
    assert m["mae"] == pytest.approx((1 + 0 + 2 + 1) / 4)
    # ranks of got (3, 4, 8, 7) are 1, 2, 4, 3 against 1, 2, 3, 4: rho = 1 - 6*2/(4*15)
    assert m["spearman"] == pytest.approx(0.8)
    assert m["pearson"] is not None and 0.8 < m["pearson"] < 1
    assert m["in_range"] is None and m["accuracy"] is None and m["kendall_tau"] is None


def test_a_failed_verdict_is_not_ok_and_never_a_number():
    cases = _cases({"label": 2}, {"label": 8}, {"label": 5})
    m = summarize(judged(cases, [ok(2), ok(8), failed()]))
    assert m["ok"] == pytest.approx(2 / 3) and m["parse_failures"] == 1
    assert m["mae"] == 0.0  # the failed case is left out, not scored 0
    assert m["spearman"] == pytest.approx(1.0)


def test_ranges_share_in_range_and_mean_distance_outside():
    cases = _cases({"range": [0, 3]}, {"range": [6, 10]}, {"range": [4, 6]})
    m = summarize(judged(cases, [ok(2), ok(4), ok(7)]))
    assert m["in_range"] == pytest.approx(1 / 3)
    assert m["outside_distance"] == pytest.approx((0 + 2 + 1) / 3)
    # against the midpoints 1.5, 8, 5: got 2, 4, 7 ranks 1, 2, 3 vs 1, 3, 2
    assert m["spearman"] == pytest.approx(0.5)


def test_pass_fail_accuracy_kappa_tpr_tnr():
    cases = _cases({"pass": True}, {"pass": True}, {"pass": False}, {"pass": False},
                   {"pass": False})
    # got: pass, fail, pass (fooled), fail, fail at threshold 5 (5.0 itself passes)
    m = summarize(judged(cases, [ok(9), ok(3), ok(5), ok(0), ok(1)]))
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["tpr"] == pytest.approx(1 / 2) and m["tnr"] == pytest.approx(2 / 3)
    # observed 3/5; p_expected 2/5, p_got 2/5: chance 0.16 + 0.36 = 0.52
    assert m["kappa"] == pytest.approx((0.6 - 0.52) / 0.48)


def test_a_threshold_moves_the_pass_mark():
    cases = _cases({"pass": True}, {"pass": False})
    assert summarize(judged(cases, [ok(6), ok(4)], threshold=7))["accuracy"] == 0.5
    assert summarize(judged(cases, [ok(6), ok(4)], threshold=5))["accuracy"] == 1.0


def test_comparisons_accuracy_and_position_consistency():
    cases = parse_cases([json.dumps({"prompt": "p", "a": "x", "b": "y", "preferred": p})
                         for p in ("a", "b", "tie")], CATALOG)
    verdicts = [Verdict(score=0.9, status=Status.OK, extra={"position_consistent": True}),
                Verdict(score=0.8, status=Status.OK, extra={"position_consistent": False}),
                Verdict(score=0.55, status=Status.OK, extra={"position_consistent": True})]
    m = summarize(judged(cases, verdicts))
    assert m["accuracy"] == pytest.approx(2 / 3)  # a right, b wrong, 0.55 is a tie
    assert m["position_consistency"] == pytest.approx(2 / 3)


def test_groups_kendall_tau_against_the_ranking():
    cases = parse_cases([json.dumps({"prompt": "p", "responses": ["x", "y", "z"],
                                     "ranking": r}) for r in ([2, 0, 1], [0, 1, 2])],
                        CATALOG)
    # case 1: expected z > x > y; got z 9, x 5, y 1: tau 1. case 2: got reversed: -1
    verdicts = [[(ok(5), ok(1), ok(9))], [(ok(1), ok(2), ok(3))]]  # one sample each
    m = summarize(judged(cases, verdicts))
    assert m["kendall_tau"] == pytest.approx(0.0)
    assert [j.error for j in judged(cases, verdicts)] == [0.0, 2.0]


def test_self_consistency_is_the_mean_spread_over_samples():
    cases = _cases({"label": 5}, {"label": 5})
    samples = [[ok(4), ok(6)], [ok(5), ok(5), failed()]]
    m = summarize(judged(cases, samples))
    assert m["self_consistency"] == pytest.approx((1.0 + 0.0) / 2)  # pstdev(4, 6) = 1
    assert m["mae"] == pytest.approx(0.5)  # sample 0 only: |4-5|, |5-5|


def test_spend_counts_calls_made_not_cache_hits():
    cases = _cases({"label": 5}, {"label": 5}, {"label": 5})
    verdicts = [ok(5, cost_usd=0.01, input_tokens=100, output_tokens=10, latency_s=1.0),
                ok(5, cost_usd=0.03, input_tokens=200, output_tokens=20, latency_s=3.0),
                ok(5, cost_usd=0.01, input_tokens=100, output_tokens=10, latency_s=0.0,
                   cached=True)]
    m = summarize(judged(cases, verdicts))
    assert m["cost_usd"] == pytest.approx(0.04) and m["tokens"] == 330
    assert m["latency_p50_s"] == pytest.approx(2.0)
    assert m["latency_p95_s"] == pytest.approx(1.0 + 2.0 * 0.95)


def test_every_figure_has_its_name_and_nothing_else():
    m = summarize(judged(_cases({"label": 5}), [ok(5)]))
    assert tuple(m) == METRICS
    assert summarize([])["cases"] == 0 and summarize([])["ok"] is None
