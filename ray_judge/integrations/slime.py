"""slime: reward functions for ``--custom-rm-path``.

::

    --custom-rm-path ray_judge.integrations.slime.rm                      # one sample a call
    --custom-rm-path ray_judge.integrations.slime.group_rm --group-rm     # a group a call

slime calls ``await rm(args, sample)`` (or, with ``--group-rm``, ``await rm(args,
samples)``) and needs a number for every sample, so the reward of a failed judgement is
a required setting: put it, and the optional ones, in the YAML of slime's
``--custom-config-path`` (its keys become attributes of ``args``)::

    ray_judge_failure_reward: 0.0        # required: the reward when the judge failed
    ray_judge_judge: terminal_agent      # optional: a named judge definition
    ray_judge_fields: [dockerfile]       # optional: sample.metadata keys sent as fields
    ray_judge_actor: judge               # optional: the judge actor's name
    ray_judge_group: true                # optional, group_rm: one judge call per group

``sample.prompt`` (text or chat messages), ``sample.response`` and ``sample.label`` (the
reference) are what the judge sees. Each verdict's status and backend are written to
``sample.metadata["judge_status"]`` / ``["judge_backend"]``, so failed samples can be
found (and filtered) after the fact. The group form sends the whole group in one Ray
call; with ``ray_judge_group`` the judge grades it as one group, in one judge call, each
response against the others (``ray_judge_judge`` then names a judge of kind ``group``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .reward import failure_value, flatten, group_items, judge_client, judge_item, reward_of

__all__ = ["group_rm", "rm"]


def _setting(args: Any, name: str, default: Any = None) -> Any:
    return getattr(args, f"ray_judge_{name}", default)


def _item(args: Any, sample: Any) -> dict[str, Any]:
    metadata = sample.metadata if isinstance(sample.metadata, dict) else {}
    wanted = _setting(args, "fields") or ()
    missing = [key for key in wanted if key not in metadata]
    if missing:
        raise ValueError(
            f"ray_judge_fields names {missing} but sample.metadata has only "
            f"{sorted(metadata)} (sample index {getattr(sample, 'index', None)})")
    fields = {key: metadata[key] for key in wanted}
    return judge_item(sample.prompt, sample.response, sample.label,
                      judge=_setting(args, "judge"), fields=fields)


async def _rewards(args: Any, samples: Sequence[Any], *, group: bool = False) -> list[float]:
    failure = failure_value(_setting(args, "failure_reward"),
                            "ray_judge_failure_reward (in slime's --custom-config-path YAML)")
    items = [_item(args, sample) for sample in samples]
    client = judge_client(_setting(args, "actor"), _setting(args, "namespace"))
    verdicts = flatten(await client.score_batch_async(group_items(items) if group else items))
    rewards = []
    for sample, verdict in zip(samples, verdicts, strict=True):
        if isinstance(sample.metadata, dict):
            sample.metadata["judge_status"] = str(verdict.status)
            sample.metadata["judge_backend"] = verdict.backend
        rewards.append(reward_of(verdict, failure))
    return rewards


async def rm(args: Any, sample: Any, **_: Any) -> float:
    """slime's ``--custom-rm-path`` function: the judge's score for one sample.

    Concurrent calls from one rollout process share Ray calls (the client batches them).
    """
    (reward,) = await _rewards(args, [sample])
    return reward


async def group_rm(args: Any, samples: Sequence[Any], **_: Any) -> list[float]:
    """slime's ``--group-rm`` form: the scores of a group's samples, in one Ray call."""
    return await _rewards(args, list(samples), group=bool(_setting(args, "group", False)))
