"""Rendering a judge definition: a request in, the prompt the judge sends out.

:func:`render` builds the :class:`~ray_judge.prompt.JudgePrompt` for a request (the
configured rubric's layout for a judge without ``system``, else the judge's templates in
the security frame of :mod:`.template`), after :func:`check_request` has made sure the
request brings exactly the inputs the judge's user template uses; :func:`correction` is
the follow-up turn after an answer that did not parse. A change here that changes a
rendered prompt bumps ``_RENDERING`` in :mod:`.definition`, so judge versions move too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..prompt import JudgePrompt
from ..verdict import JudgeRequest
from .rubric import Rubric
from .template import closing, frame, render_user
from .transcript import inputs

if TYPE_CHECKING:
    from .definition import JudgeDefinition

__all__ = ["check_request", "correction", "render"]

_DEFAULT_INPUT_CHARS = 20_000  # LLM_JUDGE_MAX_INPUT_CHARS's default, before with_defaults


def check_request(judge: JudgeDefinition, request: JudgeRequest) -> None:
    """Raise ValueError when ``request`` lacks an input this judge needs or brings a
    field it does not use (a typo that would otherwise be graded without it)."""
    if judge.kind != "pointwise":
        call = "score_group" if judge.kind == "group" else "compare"
        raise ValueError(f"judge {judge.name!r} is a {judge.kind} judge: call {call} "
                         "with it, not score")
    fields = dict(request.fields or {})
    if judge.system is None:
        if fields:
            raise ValueError(f"judge {judge.name!r} takes no fields (it uses the "
                             f"configured rubric's layout); got {sorted(fields)}")
        return
    if judge.user is None:
        return
    needed = judge.inputs
    given = set(fields) | ({"reference"} if request.reference is not None else set())
    missing = [n for n in needed if n not in given]
    if missing:
        raise ValueError(f"judge {judge.name!r} needs {', '.join(missing)} for its user "
                         f"template; the request has "
                         f"{', '.join(sorted(given)) or 'no fields'}")
    unused = sorted(set(fields) - set(needed))
    if unused:
        raise ValueError(f"judge {judge.name!r} does not use the field(s) {unused}; its "
                         f"user template uses: {', '.join(needed) or 'no fields'}")


def render(judge: JudgeDefinition, request: JudgeRequest) -> JudgePrompt:
    """The prompt for ``request``. Raises ValueError/RubricError for bad input."""
    check_request(judge, request)
    values = inputs(request)
    knobs = {k: v for k, v in (("schema", judge.schema), ("temperature", judge.temperature),
                               ("max_tokens", judge.max_tokens)) if v is not None}
    limit = judge.max_input_chars or _DEFAULT_INPUT_CHARS
    if judge.system is None:
        rubric = judge.rubric or Rubric.default(judge.effective_scale[1])
        as_text = dataclasses.replace(request, prompt=values["prompt"],
                                      response=values["response"])
        prompt = rubric.render(as_text, limit)
        return dataclasses.replace(prompt, **knobs) if knobs else prompt
    system = judge.system if request.rubric is None else request.rubric
    user, shared = render_user(judge.user, values, limit)
    if judge.frame:
        head, footer = frame(judge.parsed, judge.effective_scale, judge.labels)
        system, user = head + system, f"{user}\n\n{footer}"
    return JudgePrompt(system=system, user=user, shared=shared, **knobs)


def correction(judge: JudgeDefinition, error: str) -> str:
    """The follow-up user turn after an answer that did not parse."""
    short = closing(judge.parsed, judge.effective_scale, judge.labels)[1]
    return (f"Your answer could not be read: {error}. Answer again, following the same "
            f"grading instructions, and finish with {short}.")
