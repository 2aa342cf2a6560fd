"""A judge measured against labels: one backend's verdicts on the cases, summed up.

:class:`Judged` is one case with its verdicts on one backend (one per sample; sample 0
is the ordinary one, the verdict a training request would get, and the one the
figures below read; the others only feed ``self_consistency``). :func:`summarize` turns
a backend's list of them into the figures under the names ``ray-judge eval`` prints,
writes to JSON and gates on (:data:`METRICS`):

* ``cases``, ``ok`` (the share of judgements that came back ok), ``parse_failures``
  (how many did not parse);
* numeric labels and ranges: ``mae`` (mean absolute error, ``label`` cases),
  ``spearman`` and ``pearson`` (against ``label``, or a ``range``'s midpoint),
  ``in_range`` (share of ``range`` cases in range) and ``outside_distance`` (mean
  distance outside the range, 0 inside, over all ``range`` cases);
* ``accuracy`` (``pass`` cases against the threshold, and comparisons), ``kappa``
  (Cohen's, ``pass`` cases), ``tpr`` and ``tnr`` (true-positive and true-negative rates);
* ``position_consistency``: the share of comparisons whose two orders agreed;
* ``kendall_tau``: mean tau-b between a group's expected ranking and its scores;
* ``self_consistency``: mean standard deviation of a case's scores over its samples;
* ``escalated``: for a panel, the share of judgements its escalation backend joined;
* ``cost_usd``, ``tokens``, ``latency_p50_s``, ``latency_p95_s`` (calls made, cache
  hits left out).

Scores are read on each case's judge scale (a 0-10 judge's 0.7 is 7). A failed verdict
is never a number: its case counts as not ``ok`` and enters no score figure. A figure
with no cases to stand on, or not defined on them, is None.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..verdict import Status, Verdict
from .cases import Case
from .stats import cohen_kappa, kendall_tau, mean, pearson, percentile, spearman

__all__ = ["LOWER_IS_BETTER", "METRICS", "TIE_MARGIN", "Judged", "summarize"]

#: Every figure, in the order the table shows them.
METRICS = ("cases", "ok", "parse_failures", "mae", "spearman", "pearson", "in_range",
           "outside_distance", "accuracy", "kappa", "tpr", "tnr", "position_consistency",
           "kendall_tau", "self_consistency", "escalated", "cost_usd", "tokens",
           "latency_p50_s", "latency_p95_s")
#: Figures where less is better: a bound on them (``--min mae=1.5``) is a maximum.
LOWER_IS_BETTER = frozenset(("parse_failures", "mae", "outside_distance", "self_consistency",
                             "escalated", "cost_usd", "tokens", "latency_p50_s",
                             "latency_p95_s"))
#: A comparison's preference within this of 0.5 reads as a tie.
TIE_MARGIN = 0.1

Result = Verdict | Sequence[Verdict]


def _members(result: Result) -> tuple[Verdict, ...]:
    return (result,) if isinstance(result, Verdict) else tuple(result)


@dataclass(frozen=True)
class Judged:
    """One case and its verdicts on one backend, one result per sample (a group's is
    its list of Verdicts). ``threshold`` is the pass mark on the judge's scale."""

    case: Case
    samples: Sequence[Result]
    threshold: float

    @property
    def ok(self) -> bool:
        return all(v.ok for v in _members(self.samples[0]))

    def values(self, sample: int = 0) -> list[float] | None:
        """Sample ``sample``'s scores on the judge's scale (a comparison: its preference
        in [0, 1], 1 for ``a``), or None when it failed."""
        verdicts = _members(self.samples[sample])
        if not all(v.ok for v in verdicts):
            return None
        if self.case.kind == "compare":
            return [float(verdicts[0].score)]  # type: ignore[arg-type]
        low, high = self.case.scale
        return [low + float(v.score) * (high - low) for v in verdicts]  # type: ignore[arg-type]

    @property
    def got(self) -> Any:
        """What the judge answered, in the label's terms: a score, a preference
        (``a``/``b``/``tie``) or the group's scores; None when it failed."""
        values = self.values()
        if values is None:
            return None
        if self.case.kind == "compare":
            return ("tie" if abs(values[0] - 0.5) <= TIE_MARGIN
                    else "a" if values[0] > 0.5 else "b")
        return values if self.case.kind == "group" else values[0]

    @property
    def passed(self) -> bool | None:
        got = self.got
        return None if got is None or self.case.label != "pass" else got >= self.threshold

    @property
    def error(self) -> float:
        """How wrong the case is, for ranking the worst ones: 0 right, larger worse,
        infinite for a failed verdict."""
        got, case = self.got, self.case
        if got is None:
            return float("inf")
        if case.label == "label":
            return abs(got - case.expected)
        if case.label == "range":
            low, high = case.expected
            return max(low - got, 0.0, got - high)
        if case.label == "pass":
            return float(self.passed != case.expected)
        if case.label == "preferred":
            return float(got != case.expected)
        tau = kendall_tau(_expected_scores(case.expected), got)
        return 1.0 - (tau if tau is not None else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The case as JSON: where it is, what was expected and got, every verdict."""
        return {"line": self.case.line, "id": self.case.id, "kind": self.case.kind,
                "judge": self.case.judge, "label": self.case.label,
                "expected": self.case.expected, "got": self.got, "ok": self.ok,
                "error": None if self.error == float("inf") else round(self.error, 6),
                "verdicts": [[_verdict_dict(v) for v in _members(s)] if not isinstance(
                    s, Verdict) else _verdict_dict(s) for s in self.samples]}


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    return {"score": verdict.score, "status": str(verdict.status), "error": verdict.error,
            "backend": verdict.backend, "model": verdict.model, "raw": verdict.raw,
            "latency_s": verdict.latency_s, "cached": verdict.cached,
            "cost_usd": verdict.cost_usd, "input_tokens": verdict.input_tokens,
            "output_tokens": verdict.output_tokens,
            "position_consistent": verdict.extra.get("position_consistent")}


def _expected_scores(ranking: Sequence[int]) -> list[float]:
    """A ranking (indices best first) as scores: the best gets n, the worst 1."""
    scores = [0.0] * len(ranking)
    for position, index in enumerate(ranking):
        scores[index] = float(len(ranking) - position)
    return scores


def summarize(judged: Sequence[Judged]) -> dict[str, float | int | None]:
    """Every figure of :data:`METRICS` for one backend's judged cases."""
    calls = [s for j in judged for s in j.samples]
    oks = [j for j in judged if j.ok]
    out: dict[str, Any] = dict.fromkeys(METRICS)
    out["cases"] = len(judged)
    out["ok"] = (sum(all(v.ok for v in _members(s)) for s in calls) / len(calls)
                 if calls else None)
    out["parse_failures"] = sum(any(v.status is Status.PARSE_ERROR for v in _members(s))
                                for s in calls)
    out.update(_numeric([j for j in oks if j.case.label in ("label", "range")]))
    out.update(_classes(oks))
    consistent = [v.extra["position_consistent"] for j in oks if j.case.kind == "compare"
                  for v in _members(j.samples[0]) if "position_consistent" in v.extra]
    out["position_consistency"] = mean([float(bool(c)) for c in consistent])
    taus = [kendall_tau(_expected_scores(j.case.expected), j.got)
            for j in oks if j.case.label == "ranking"]
    out["kendall_tau"] = mean([t for t in taus if t is not None])
    out["self_consistency"] = mean([s for s in map(_spread, judged) if s is not None])
    escalations = [any(v.extra["escalated"] for v in _members(s) if "escalated" in v.extra)
                   for s in calls if any("escalated" in v.extra for v in _members(s))]
    out["escalated"] = mean([float(e) for e in escalations])
    out.update(_spend(calls))
    return out


def _numeric(judged: Sequence[Judged]) -> dict[str, float | None]:
    labelled = [j for j in judged if j.case.label == "label"]
    ranged = [j for j in judged if j.case.label == "range"]
    expected = [j.case.expected if j.case.label == "label" else sum(j.case.expected) / 2
                for j in judged]
    got = [j.got for j in judged]
    return {"mae": mean([j.error for j in labelled]),
            "spearman": spearman(expected, got) if judged else None,
            "pearson": pearson(expected, got),
            "in_range": mean([float(j.error == 0) for j in ranged]),
            "outside_distance": mean([j.error for j in ranged])}


def _classes(oks: Sequence[Judged]) -> dict[str, float | None]:
    passes = [j for j in oks if j.case.label == "pass"]
    expected = [bool(j.case.expected) for j in passes]
    got = [bool(j.passed) for j in passes]
    right = [g for e, g in zip(expected, got, strict=True) if e]
    wrong = [g for e, g in zip(expected, got, strict=True) if not e]
    graded = passes + [j for j in oks if j.case.label == "preferred"]
    return {"accuracy": mean([float(j.error == 0) for j in graded]),
            "kappa": cohen_kappa(expected, got),
            "tpr": mean([float(g) for g in right]),
            "tnr": mean([float(not g) for g in wrong])}


def _spread(judged: Judged) -> float | None:
    """Mean over a case's scores of their standard deviation across its ok samples."""
    samples = [v for v in (judged.values(i) for i in range(len(judged.samples)))
               if v is not None]
    if len(samples) < 2:
        return None
    return statistics.fmean(statistics.pstdev(column) for column in zip(*samples,
                                                                           strict=True))


def _spend(calls: Sequence[Result]) -> dict[str, float | int | None]:
    cost, tokens, latencies = 0.0, 0, []
    for result in calls:
        spent = [v for v in _members(result) if not v.spent_elsewhere]
        cost += sum(v.cost_usd or 0.0 for v in spent)
        tokens += sum((v.input_tokens or 0) + (v.output_tokens or 0) for v in spent)
        if spent:
            latencies.append(max(v.latency_s for v in spent))
    return {"cost_usd": round(cost, 6), "tokens": tokens,
            "latency_p50_s": percentile(latencies, 50),
            "latency_p95_s": percentile(latencies, 95)}


def thresholds(case: Case, threshold: float | None) -> float:
    """The pass mark of ``case``: ``threshold``, or the middle of its judge's scale."""
    return threshold if threshold is not None else sum(case.scale) / 2


def as_json(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
