"""What every framework adapter shares: the judge's client, the items it sends, and the
user's explicit value for a failed judgement.

A failure is never a number by itself: frameworks that can carry "no reward" (TRL: None)
get that; those that need a float for every sample (verl, OpenRLHF, slime) get the
value the user set, and refuse to start without one (:func:`failure_value`).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["failure_value", "flatten", "group_items", "judge_client", "judge_item", "reward_of",
           "status_counts"]

#: Frameworks score a batch as a burst of concurrent calls (verl decodes each sample in a
#: thread first): a wider window than the client's default gathers the burst into one Ray
#: call, and costs nothing beside a judge's seconds.
LINGER_S = 0.02

#: Keys of a judge item the judge reads; anything else an adapter must not invent.
_OPTIONAL = ("reference", "rubric", "judge", "fields", "metadata")


def judge_client(name: str | None = None, namespace: str | None = None) -> Any:
    """This process's :class:`~ray_judge.JudgeClient` for the judge ``name``.

    One per (name, namespace), so every call a framework makes from this process goes
    through the same queue (concurrent single calls share a ``score_batch``). The client
    joins the Ray cluster the framework already runs (``ray.init`` is the framework's);
    it imports Ray on first use only.
    """
    return _client(name, namespace)


@functools.lru_cache(maxsize=16)
def _client(name: str | None, namespace: str | None) -> Any:
    from ..pool.client import JudgeClient

    return JudgeClient(name=name, namespace=namespace, linger_s=LINGER_S)


def judge_item(prompt: Any, response: Any, reference: Any = None, *,
               judge: str | None = None, fields: Mapping[str, Any] | None = None,
               rubric: str | None = None, metadata: Any = None) -> dict[str, Any]:
    """One ``score_batch`` item; keys left at None are not sent.

    ``prompt`` and ``response`` go as the framework gave them: text, or a list of
    OpenAI-shape chat messages (a trajectory), which the judge renders as a transcript.
    """
    item: dict[str, Any] = {"prompt": prompt, "response": response}
    values = {"reference": reference, "rubric": rubric, "judge": judge,
              "fields": dict(fields) if fields else None, "metadata": metadata}
    item.update({key: values[key] for key in _OPTIONAL if values[key] is not None})
    return item


def group_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive items with the same prompt (and reference, judge, fields) as one group
    item each, ``{"prompt", "responses": [...], ...}``: the judge grades a group in one
    call, each response against the others. Frameworks hand over a prompt's completions
    side by side (TRL's ``num_generations``, slime's ``n_samples_per_prompt``)."""
    groups: list[dict[str, Any]] = []
    for item in items:
        if "rubric" in item:
            raise ValueError("a group judge takes no per-item rubric; use a judge "
                             "definition of kind 'group' for your instructions")
        shared = {k: v for k, v in item.items() if k != "response"}
        if groups and {k: v for k, v in groups[-1].items() if k != "responses"} == shared:
            groups[-1]["responses"].append(item["response"])
        else:
            groups.append({**shared, "responses": [item["response"]]})
    return groups


def flatten(results: Sequence[Any]) -> list[Any]:
    """``score_batch`` results with each group's list of Verdicts spliced in place."""
    return [v for r in results for v in (r if isinstance(r, list) else [r])]


def failure_value(value: object, setting: str) -> float:
    """The user's reward for a failed judgement, checked; ``setting`` names where it is set.

    Raises:
        ValueError: when it is missing (there is no default: ray_judge never decides
            what a failure is worth) or not a finite number.
    """
    if value is None:
        raise ValueError(
            f"{setting} is required: the reward a sample gets when the judge could not "
            "judge it (timeout, rate limit, parse error, ...). ray_judge never picks one "
            "for you; 0.0 is a choice, make it explicitly")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # type: ignore[arg-type]  # e.g. "0.0" from a CLI or YAML
        except (TypeError, ValueError):
            raise ValueError(f"{setting} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{setting} must be a finite number, got {value!r}")
    return float(value)


def reward_of(verdict: Any, failure: float | None) -> float | None:
    """The verdict's score when it is ok, else ``failure`` (None: the framework's "none")."""
    return verdict.score if verdict.ok else failure


def status_counts(verdicts: Iterable[Any]) -> dict[str, int]:
    """How many verdicts have each status, e.g. ``{"ok": 7, "timeout": 1}``."""
    return dict(Counter(str(v.status) for v in verdicts))
