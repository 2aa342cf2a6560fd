"""verl: ``compute_score`` functions for ``reward.custom_reward_function``.

::

    reward.custom_reward_function.path=pkg://ray_judge.integrations.verl \\
    +reward.custom_reward_function.reward_kwargs.failure_score=0.0

verl calls ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=..., **reward_kwargs)`` once per sample, concurrently within a batch (its
reward loop's ``run_single``); the async :func:`compute_score` (verl's default name)
lets the client coalesce those calls into one Ray call per batch. ``compute_score_sync``
is the same for a reward manager that calls synchronously, and ``compute_score_batch``
serves verl's ``batch`` reward manager (lists in, one Ray call).

verl needs a float for every sample, so ``failure_score`` (in ``reward_kwargs``) is
**required**: the reward of a failed judgement, never a silent 0.0. Every result is a
dict with the same keys, so verl's assembly of reward extra info never meets mixed key
sets: ``score``, ``judge_ok`` (1.0/0.0), ``judge_status`` and ``judge_backend``.

Other ``reward_kwargs``: ``prompt_key`` (the ``extra_info`` key holding the question,
default ``"question"``), ``judge`` (a named judge definition), ``fields`` (``extra_info``
keys sent as the judge's fields: a list, or ``{field: key}``), ``actor``/``namespace``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .reward import failure_value, judge_client, judge_item

__all__ = ["compute_score", "compute_score_batch", "compute_score_sync"]

#: The keys of every result, in this order.
RESULT_KEYS = ("score", "judge_ok", "judge_status", "judge_backend")


def _fields(spec: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    if isinstance(spec, str):
        raise TypeError(f"reward_kwargs.fields must be a list or a dict, got {spec!r}")
    if isinstance(spec, Mapping):
        return dict(spec)
    return {key: key for key in spec or ()}


def _item(solution_str: Any, ground_truth: Any, extra_info: Any, *, prompt_key: str,
          judge: str | None, fields: dict[str, str]) -> dict[str, Any]:
    info = extra_info if isinstance(extra_info, Mapping) else {}
    wanted = [prompt_key, *fields.values()]
    missing = [key for key in wanted if key not in info]
    if missing:
        raise ValueError(
            f"extra_info lacks {missing} (reward_kwargs prompt_key={prompt_key!r}, "
            f"fields={fields!r}); it has {sorted(info)}")
    reference = ground_truth if ground_truth not in (None, "") else None
    return judge_item(info[prompt_key], solution_str,
                      None if reference is None else str(reference), judge=judge,
                      fields={field: info[key] for field, key in fields.items()})


def _result(verdict: Any, failure: float) -> dict[str, Any]:
    return {"score": verdict.score if verdict.ok else failure,
            "judge_ok": 1.0 if verdict.ok else 0.0,
            "judge_status": str(verdict.status),
            "judge_backend": verdict.backend or ""}


def _settings(failure_score: Any, fields: Any) -> tuple[float, dict[str, str]]:
    failure = failure_value(failure_score,
                            "reward.custom_reward_function.reward_kwargs.failure_score")
    return failure, _fields(fields)


async def compute_score(data_source: Any = None, solution_str: Any = None,
                        ground_truth: Any = None, extra_info: Any = None, *,
                        failure_score: Any = None, prompt_key: str = "question",
                        judge: str | None = None,
                        fields: Sequence[str] | Mapping[str, str] | None = None,
                        actor: str | None = None, namespace: str | None = None,
                        **_: Any) -> dict[str, Any]:
    """One sample's reward: ``{"score", "judge_ok", "judge_status", "judge_backend"}``."""
    failure, names = _settings(failure_score, fields)
    item = _item(solution_str, ground_truth, extra_info, prompt_key=prompt_key, judge=judge,
                 fields=names)
    (verdict,) = await judge_client(actor, namespace).score_batch_async([item])
    return _result(verdict, failure)


def compute_score_sync(data_source: Any = None, solution_str: Any = None,
                       ground_truth: Any = None, extra_info: Any = None, *,
                       failure_score: Any = None, prompt_key: str = "question",
                       judge: str | None = None,
                       fields: Sequence[str] | Mapping[str, str] | None = None,
                       actor: str | None = None, namespace: str | None = None,
                       **_: Any) -> dict[str, Any]:
    """:func:`compute_score` for reward managers that call synchronously."""
    failure, names = _settings(failure_score, fields)
    item = _item(solution_str, ground_truth, extra_info, prompt_key=prompt_key, judge=judge,
                 fields=names)
    (verdict,) = judge_client(actor, namespace).score_batch([item])
    return _result(verdict, failure)


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[Any],
                        ground_truths: Sequence[Any], extra_infos: Sequence[Any], *,
                        failure_score: Any = None, prompt_key: str = "question",
                        judge: str | None = None,
                        fields: Sequence[str] | Mapping[str, str] | None = None,
                        actor: str | None = None, namespace: str | None = None,
                        **_: Any) -> list[dict[str, Any]]:
    """verl's ``batch`` reward manager form: every sample of the batch in one Ray call."""
    failure, names = _settings(failure_score, fields)
    items = [_item(s, g, e, prompt_key=prompt_key, judge=judge, fields=names)
             for s, g, e in zip(solution_strs, ground_truths, extra_infos, strict=True)]
    verdicts = judge_client(actor, namespace).score_batch(items)
    return [_result(v, failure) for v in verdicts]
