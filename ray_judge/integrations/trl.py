"""TRL: a reward function for ``GRPOTrainer(reward_funcs=[...])``.

::

    from ray_judge.integrations.trl import JudgeReward
    trainer = GRPOTrainer(model, reward_funcs=[JudgeReward(reference="answer")], ...)

TRL calls it with ``prompts``, ``completions``, ``completion_ids``, every other dataset
column as a keyword list, and ``trainer_state``/``log_metric``/``log_extra``; it is async,
so TRL runs it concurrently with other async reward functions. Each call judges the whole
batch TRL hands over in one Ray call.

A failed judgement is ``None``: TRL's "no reward" for that completion (with no other
reward function, TRL leaves the row out and warns), never a 0.0 that would drag its
group's baseline. Conversational data (lists of messages) goes to the judge as it is, so
a multi-turn completion is judged as a trajectory. Each call logs, through ``log_metric``,
how many verdicts had each status (``judge/ok``, ``judge/timeout``, ...) and, through
``log_extra``, each completion's ``judge_status`` in TRL's completions table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..verdict import Status
from .reward import flatten, group_items, judge_client, judge_item, status_counts

__all__ = ["JudgeReward"]


class JudgeReward:
    """The judge as a TRL reward function.

    Args:
        reference: the dataset column holding each prompt's reference answer, if any.
        fields: dataset columns sent as the judge definition's ``fields``: a list of
            names, or ``{field name: column name}``.
        judge: a named judge definition (default: the default judge).
        rubric: judging instructions for every completion (default: the judge's own).
        actor: the judge actor's name (default ``LLM_JUDGE_ACTOR_NAME`` or ``judge``).
        namespace: its Ray namespace (default ``ray_judge``).
        name: the name TRL logs this reward under (``rewards/<name>/mean``).
        group: judge each prompt's ``num_generations`` completions as one group, in one
            judge call, each against the others (``judge`` then names a judge of kind
            ``group``; None: the built-in ``group`` judge).

    Example:
        >>> reward = JudgeReward(reference="answer", fields={"dockerfile": "env"})
    """

    def __init__(self, *, reference: str | None = None,
                 fields: Sequence[str] | Mapping[str, str] | None = None,
                 judge: str | None = None, rubric: str | None = None,
                 actor: str | None = None, namespace: str | None = None,
                 name: str = "ray_judge", group: bool = False) -> None:
        if group and rubric is not None:
            raise ValueError("group=True takes no rubric: give a judge of kind 'group'")
        if isinstance(fields, str):
            raise TypeError(f"fields must be a list of column names or a dict, got {fields!r}")
        self.reference = reference
        self.fields = dict(fields) if isinstance(fields, Mapping) else {f: f for f in fields or ()}
        self.judge = judge
        self.rubric = rubric
        self.actor = actor
        self.namespace = namespace
        self.group = group
        #: TRL names a callable reward by its ``__name__``.
        self.__name__ = name

    def __repr__(self) -> str:
        return (f"JudgeReward(reference={self.reference!r}, fields={self.fields!r}, "
                f"judge={self.judge!r}, name={self.__name__!r}, group={self.group})")

    def _column(self, columns: Mapping[str, Any], name: str, n: int) -> list[Any]:
        if name not in columns:
            known = sorted(k for k in columns if k not in ("trainer_state", "log_metric",
                                                           "log_extra", "environments"))
            raise ValueError(f"{self!r} reads the dataset column {name!r}, which this batch "
                             f"lacks; its columns: {known}")
        values = list(columns[name])
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
        return values

    def items(self, prompts: Sequence[Any], completions: Sequence[Any],
              columns: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The judge items for one TRL batch (one per completion)."""
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"TRL passed {len(prompts)} prompts for {n} completions")
        references = (self._column(columns, self.reference, n) if self.reference
                      else [None] * n)
        fields = {field: self._column(columns, column, n)
                  for field, column in self.fields.items()}
        return [judge_item(prompts[i], completions[i], references[i], judge=self.judge,
                           fields={field: values[i] for field, values in fields.items()},
                           rubric=self.rubric)
                for i in range(n)]

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                       completion_ids: Any = None, *,
                       log_metric: Callable[[str, float], None] | None = None,
                       log_extra: Callable[[str, list[Any]], None] | None = None,
                       **columns: Any) -> list[float | None]:
        items = self.items(prompts, completions, columns)
        client = judge_client(self.actor, self.namespace)
        verdicts = flatten(await client.score_batch_async(
            group_items(items) if self.group else items))
        if log_metric is not None:
            counts = status_counts(verdicts)
            for status in Status:
                log_metric(f"judge/{status.value}", float(counts.get(status.value, 0)))
        if log_extra is not None:
            log_extra("judge_status", [str(v.status) for v in verdicts])
        return [v.score if v.ok else None for v in verdicts]
