"""One judgement of a group (or a pair) in one call: render, read strictly, correct, map back.

The rules are :mod:`.judgement`'s for a single response, applied to the group as a
whole (its :func:`~.judgement.converse` runs the calls, with the group's reader and
correction turn): the transport (one backend call with its own bounded retries) is
passed in; an answer that does not read makes **every** member a ``parse_error`` with
the raw text (never a partial guess), after the judge's correction turns; the scores
the judge gave by display position are mapped back to the caller's order by the
:class:`~ray_judge.judging.groups.prompt.GroupLayout` that shuffled them.

A pair (the ``pairwise`` kind) is a group of two shown in the caller's order (the pool
asks for both orders itself): the judge's preference ``p`` for RESPONSE A becomes the
first member's score and ``1 - p`` the second's.

A call's tokens and cost are shared out over its members, so totals over Verdicts stay
the call's totals.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ...prompt import JudgePrompt
from ...verdict import GroupRequest, Status, Verdict
from ..json_answer import check_scores
from ..judgement import converse
from ..transcript import sendable
from .pairwise import PAIR_RUBRIC, render_pair
from .prompt import GROUP_RUBRIC, GroupLayout, render_group

if TYPE_CHECKING:
    from ..definition import JudgeDefinition
    from ..judgement import Transport

__all__ = ["group_layout", "judge_group", "render_group_prompt"]


def as_text(request: GroupRequest) -> GroupRequest:
    """``request`` with trajectories rendered as transcripts; ValueError for text no
    backend can send (an unpaired surrogate)."""
    return dataclasses.replace(
        request, prompt=sendable(request.prompt, "prompt"),
        responses=tuple(sendable(r, f"responses[{i}]") for i, r in enumerate(request.responses)),
        reference=None if request.reference is None else sendable(request.reference, "reference"),
        fields=None if request.fields is None else {
            k: sendable(v, f"fields[{k!r}]") for k, v in request.fields.items()})


def group_layout(definition: JudgeDefinition, request: GroupRequest,
                 salt: str = "") -> GroupLayout:
    """How ``request`` (as text) is shown: shuffled, seeded by its content, the judge's
    version and ``salt`` (a panel member's backend: each member its own order), for a
    group judge with ``shuffle``; as given for a pair."""
    shuffle = definition.kind == "group" and definition.shuffle
    fields = json.dumps(request.fields, sort_keys=True) if request.fields else None
    salt = f"{definition.version}|{fields}" + (f"|{salt}" if salt else "")
    return GroupLayout.for_group(request.prompt, request.responses, request.reference,
                                 shuffle=shuffle, salt=salt)


def render_group_prompt(definition: JudgeDefinition, request: GroupRequest,
                        layout: GroupLayout) -> JudgePrompt:
    """The prompt for ``request`` (as text); ValueError when the judge cannot take it."""
    limit = definition.max_input_chars or 20_000
    knobs = {k: v for k, v in (("schema", definition.schema),
                               ("temperature", definition.temperature),
                               ("max_tokens", definition.max_tokens)) if v is not None}
    if definition.kind == "pairwise":
        if len(request.responses) != 2:
            raise ValueError(f"judge {definition.name!r} compares two responses, got "
                             f"{len(request.responses)}")
        first, second = layout.shown(list(request.responses))
        prompt = render_pair(definition.system or PAIR_RUBRIC, request.prompt, first, second,
                             request.reference, scale=definition.effective_scale,
                             max_input_chars=limit, frame=definition.frame,
                             fields=request.fields)
    else:
        prompt = render_group(definition.system or GROUP_RUBRIC, request.prompt,
                              request.responses, request.reference, layout,
                              scale=definition.effective_scale, max_input_chars=limit,
                              frame=definition.frame, fields=request.fields)
    return dataclasses.replace(prompt, **knobs) if knobs else prompt


async def judge_group(definition: JudgeDefinition, request: GroupRequest,
                      transport: Transport, *, time_left: Callable[[], float],
                      salt: str = "") -> tuple[Verdict, ...]:
    """One Verdict per response of ``request``, in its order (without backend, model,
    metadata and latency: the backend adds those). ``salt`` varies the shuffle.

    Raises ValueError/TypeError (before any call) when the judge cannot take the input.
    """
    request = as_text(request)
    layout = group_layout(definition, request, salt)
    prompt = render_group_prompt(definition, request, layout)
    k = len(request.responses)
    talk = await converse(prompt, transport,
                          lambda completion: _read(definition, completion.text,
                                                   completion.structured, k),
                          lambda error: _correction(definition, error, k),
                          turns=definition.correction_turns, time_left=time_left)
    common = {"attempts": talk.attempts, "format_retries": talk.format_retries,
              "model": talk.model, "judge": definition.name,
              "judge_version": definition.version}
    if talk.failure is not None:
        return _members(layout, talk.usage, None, {**talk.failure, **common})
    common["raw"] = talk.text
    if talk.error is not None:
        return _members(layout, talk.usage, None, {
            "status": Status.PARSE_ERROR, "error": talk.error, **common})
    return _members(layout, talk.usage, layout.to_caller(talk.value),
                    {"status": Status.OK, **common})


def _correction(definition: JudgeDefinition, error: str, k: int) -> str:
    if definition.kind == "pairwise":
        return definition.correction(error)
    low, high = definition.effective_scale
    return (f"Your answer could not be read: {error}. Answer again, following the same "
            f'grading instructions, and finish with a JSON object {{"{definition.parsed.key}": '
            f"[...]}} holding exactly {k} numbers from {low:g} to {high:g}, one per "
            f"response, in the order RESPONSE 1 to RESPONSE {k}.")


def _read(definition: JudgeDefinition, text: str, structured: Any, k: int) -> list[float]:
    """Scores on [0, 1] by display position."""
    if definition.kind == "pairwise":
        preference, _ = definition.read(text, structured)
        return [preference, 1.0 - preference]
    parser = definition.parsed
    used = (definition.schema is not None and isinstance(structured, Mapping)
            and parser.key in structured)
    raw = structured[parser.key] if used else parser.read(text)
    low, high = definition.effective_scale
    return [(s - low) / (high - low) for s in check_scores(raw, k, (low, high),
                                                           f'"{parser.key}"')]


def _members(layout: GroupLayout, usage: Mapping[str, Any], scores: list[float] | None,
             fields: Mapping[str, Any]) -> tuple[Verdict, ...]:
    """One Verdict per member (caller's order): ``scores`` when ok, else ``fields``'s
    failure for every one."""
    k = len(layout)
    return tuple(Verdict(score=None if scores is None else scores[i],
                         extra={"group": layout.describe(i)}, **_share(usage, i, k), **fields)
                 for i in range(k))


def _share(usage: Mapping[str, Any], i: int, k: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        total = usage[name]
        out[name] = None if total is None else total // k + (1 if i < total % k else 0)
    out["cost_usd"] = None if usage["cost_usd"] is None else usage["cost_usd"] / k
    return out
