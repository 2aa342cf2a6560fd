"""A judge definition: a named, validated, immutable judge (templates, parser, scale, knobs).

Example:
    >>> judge = JudgeDefinition(
    ...     name="terminal_agent", system="Grade the agent's work ...",
    ...     user="# Dockerfile:\\n{dockerfile}\\n\\n# Trajectory:\\n{response}\\n",
    ...     parser="yaml:score", scale=(0, 1), correction_turns=1,
    ...     max_input_chars=200_000)
    >>> judge.version  # a short hash of everything that changes the verdict
    '3f0c...'

``system=None`` is today's judge layout: the configured rubric (``LLM_JUDGE_RUBRIC_FILE``
or the built-in one) with its own frame and ``SCORE: N`` answer, so ``JudgeDefinition(
name="voting", samples=3)`` is the default judge asked three times. ``scale``,
``max_input_chars`` and that rubric are filled in from the configuration by
:meth:`JudgeDefinition.with_defaults` (the catalog does it), which is why ``version`` is
the *effective* judge's. Every judge today grades one response per request; judges of
a group of responses (pairwise, ranking) would add a ``kind`` to this value.

This module holds the value and its version; the checks it passes on construction are
in :mod:`.validation`, and turning a request into its prompt is in :mod:`.rendering`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..prompt import JudgePrompt
from ..verdict import JudgeRequest
from . import rendering
from .panel import ESCALATIONS, PANEL_KEYS, Panel, check_panel
from .parsers import Parser, read_value
from .rubric import Rubric
from .template import placeholders
from .validation import AGGREGATES, KINDS, validate

__all__ = ["AGGREGATES", "DEFINITION_KEYS", "ESCALATIONS", "KINDS", "JudgeDefinition"]

#: Keys of a judge's table in a judges file (``system_file``/``user_file`` are read there).
DEFINITION_KEYS = ("system", "system_file", "user", "user_file", "parser", "scale", "labels",
                   "schema", "correction_turns", "samples", "aggregate", "max_input_chars",
                   "temperature", "max_tokens", "frame", "kind", "max_group", "shuffle",
                   "fallback", "swap", "calibrate", "canaries", "canaries_file",
                   *PANEL_KEYS)
_DATA = ("prompt", "response")
# Bumped when ray_judge changes how a judge is rendered or read, so versions move too.
_RENDERING = 2  # 2: look-alike and >>> marker runs neutralised (issue 25)


@dataclass(frozen=True)
class JudgeDefinition:
    """A named judge. Validated on construction: a bad value raises
    :class:`~ray_judge.errors.JudgeDefinitionError` naming the judge, the key and the value.

    Args:
        name: what requests ask for (``judge="terminal_agent"``); ``default`` is built in.
        system: grading instructions, sent as written (``None``: the configured rubric).
        user: template of the user message; ``{prompt}``, ``{response}``, ``{reference}``
            and request fields each become a data block (``None``: one block per input).
        parser: ``score_line``, ``regex:<pattern>``, ``json:<key>``, ``yaml:<key>`` or
            ``python:<module>:<function>`` (see :mod:`ray_judge.judging.parsers`).
        scale: the judge's own range, mapped onto [0, 1] (default: 0 to
            ``LLM_JUDGE_SCORE_MAX``, or 0 to 1 with ``labels``).
        labels: parsed label -> number on the scale.
        schema: a JSON schema: ask the backend for structured output.
        correction_turns: follow-up turns when an answer does not parse.
        samples: independent judgements per request, combined by ``aggregate``.
        max_input_chars: longest data block (default ``LLM_JUDGE_MAX_INPUT_CHARS``).
        temperature: sampling temperature (LiteLLM), ``None`` for the backend's.
        max_tokens: most output tokens per answer, ``None`` for the backend's.
        frame: put ray_judge's security preamble before ``system`` and a footer after
            the data; ``False`` sends the templates as written, apart from the blocks.
        kind: ``pointwise`` (one response), ``group`` (several responses to one prompt,
            one call: ``score_group``) or ``pairwise`` (two: ``compare``). A group or
            pairwise judge shows each response in a numbered (or A/B) data block, reads
            ``json:scores`` / ``json:preference`` unless ``parser`` says otherwise, and
            takes no ``user`` template and one sample.
        max_group: largest group judged in one call; larger ones are split in chunks
            sharing an anchor response (see :mod:`ray_judge.judging.groups.split`).
        shuffle: show a group in an order shuffled from its content.
        fallback: ``"pointwise"``: when a group's answer does not read after the
            correction turns, judge each response alone with the ``default`` judge.
        swap: ask a comparison in both orders and average them.
        calibrate: ``"quantile"``: after a backend switch, serve this judge's scores mapped
            onto its reference backend's scale (:mod:`ray_judge.shift.monitor`);
            ``"none"``: never; ``None``: ``LLM_JUDGE_CALIBRATE`` for ``default``, else
            never. Not part of the version: it maps the served score, the judgement and
            the cached verdict stay the backend's own.
        canaries: ``False``: never send this judge canaries (known-bad answers judged in
            the background, :mod:`ray_judge.quality.canaries`). Not part of the version.
        canary_answers: the judge's own known-bad answers (texts or message lists), sent
            as canaries beside the built-in ones; a judges file's ``canaries_file`` fills
            it. Not part of the version.
        panel: backend specs (and ``"@current"``, the serving backend) that each judge
            every request; their ok scores are combined by ``aggregate``
            (:mod:`ray_judge.pool.panels`). ``None``: not a panel.
        min_members: fewest ok members for a panel verdict (default: a majority).
        escalate_to: a backend spec that judges too when the members disagree.
        escalate_when: ``"spread > 0.3"``: when the ok members' scores (on [0, 1]) span
            more than that (with ``aggregate = "majority"``, also a tied vote).
        escalation: ``"decides"`` (the escalation backend's verdict is the score) or
            ``"joins"`` (it joins the aggregate).
            The panel keys are not part of the version: a member's verdict is the same
            whichever panel asked for it (its cache key names the member's backend).
        source: where it was defined, for messages (not part of the version).
    """

    name: str
    system: str | None = None
    user: str | None = None
    parser: str = "score_line"
    scale: tuple[float, float] | None = None
    labels: Mapping[str, float] | None = None
    schema: Mapping[str, Any] | None = None
    correction_turns: int = 0
    samples: int = 1
    aggregate: str = "mean"
    max_input_chars: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    frame: bool = True
    kind: str = "pointwise"
    max_group: int = 16
    shuffle: bool = True
    fallback: str | None = None
    swap: bool = True
    calibrate: str | None = None
    canaries: bool = True
    canary_answers: tuple[Any, ...] = field(default=(), compare=False)
    panel: tuple[str, ...] | None = None
    min_members: int | None = None
    escalate_to: str | None = None
    escalate_when: str | None = None
    escalation: str = "decides"
    source: str = field(default="code", compare=False)
    #: the configured rubric, for a judge without ``system`` (set by with_defaults)
    rubric: Rubric | None = field(default=None, repr=False)
    # Computed once: every request asks for them (the cache key, the field check).
    _version: str = field(init=False, repr=False, compare=False, default="")
    _inputs: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _panel: Panel | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "_panel", check_panel(self))
        object.__setattr__(self, "_version", self._hash())
        object.__setattr__(self, "_inputs", () if self.user is None else tuple(
            n for n in placeholders(self.user, "user template") if n not in _DATA))

    # -- what the rest of the code reads ----------------------------------------------

    @property
    def version(self) -> str:
        """A short stable hash of everything that changes the verdict (not the name)."""
        return self._version

    def _hash(self) -> str:
        system = self.system
        if system is None and self.kind != "pointwise":
            system = ["built in", self.kind]
        elif system is None:
            system = None if self.rubric is None else ["rubric", self.rubric.template]
        parts = {
            "rendering": _RENDERING, "system": system, "user": self.user,
            "parser": self.parser, "scale": self.scale, "labels": self.labels,
            "schema": self.schema, "correction_turns": self.correction_turns,
            "samples": self.samples, "aggregate": self.aggregate,
            "max_input_chars": self.max_input_chars, "temperature": self.temperature,
            "max_tokens": self.max_tokens, "frame": self.frame,
        }
        if self.kind != "pointwise":  # pointwise versions stay what they were
            parts.update(kind=self.kind, max_group=self.max_group, shuffle=self.shuffle,
                         fallback=self.fallback, swap=self.swap)
        blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:12]

    @property
    def panel_plan(self) -> Panel | None:
        """The panel this judge convenes (None: a single-backend judge)."""
        return self._panel

    @property
    def parsed(self) -> Parser:
        """The parser this judge reads answers with."""
        return _parser(self.parser, self.effective_scale[1])

    @property
    def effective_scale(self) -> tuple[float, float]:
        if self.scale is not None:
            return self.scale
        return (0.0, 1.0) if self.labels else (0.0, 10.0)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs a request must bring beyond prompt and response (``()``: none)."""
        return self._inputs

    def check(self, request: JudgeRequest) -> None:
        """Raise ValueError when ``request`` lacks an input this judge needs or brings a
        field it does not use (a typo that would otherwise be graded without it)."""
        rendering.check_request(self, request)

    def render(self, request: JudgeRequest) -> JudgePrompt:
        """The prompt for ``request``. Raises ValueError/RubricError for bad input."""
        return rendering.render(self, request)

    def read(self, text: str, structured: Any = None) -> tuple[float, bool]:
        """The score on [0, 1] of an answer, and whether the structured output gave it.

        Raises ScoreParseError (only) when the answer holds no valid verdict.
        """
        parser = self.parsed
        low, high = self.effective_scale
        used = (self.schema is not None and isinstance(structured, Mapping)
                and parser.key in structured)
        raw = structured[parser.key] if used else parser.read(text)
        value = read_value(raw, (low, high), self.labels)
        return min(1.0, max(0.0, (value - low) / (high - low))), used

    def correction(self, error: str) -> str:
        """The follow-up user turn after an answer that did not parse."""
        return rendering.correction(self, error)

    def with_defaults(self, *, score_max: float, max_input_chars: int,
                      rubric: Rubric | None) -> JudgeDefinition:
        """This judge with the configuration's defaults filled in where it left them."""
        changes: dict[str, Any] = {}
        if self.scale is None:
            changes["scale"] = (0.0, 1.0) if self.labels else (0.0, float(score_max))
        if self.max_input_chars is None:
            changes["max_input_chars"] = max_input_chars
        if (self.system is None and self.rubric is None and rubric is not None
                and self.kind == "pointwise"):
            # The rubric's frame names its scale: keep it the judge's.
            top = changes.get("scale", self.scale)[1]
            changes["rubric"] = (rubric if rubric.score_max == top
                                 else Rubric(rubric.template, top, rubric.source))
        return dataclasses.replace(self, **changes) if changes else self


@functools.lru_cache(maxsize=256)
def _parser(spec: str, score_max: float) -> Parser:
    # Not cached on the instance: a Parser holds closures, and definitions travel pickled.
    return Parser.from_spec(spec, score_max=score_max)
