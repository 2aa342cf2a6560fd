"""A labelled cases file: requests as ``score_batch`` takes them, each with its expected answer.

One JSON object per line (blank lines are skipped)::

    {"prompt": "2+2?", "response": "4", "reference": "4", "pass": true}
    {"prompt": "...", "response": [...messages...], "judge": "terminal_agent",
     "fields": {"dockerfile": "..."}, "range": [0.7, 1.0], "why": "fixed the bug"}
    {"prompt": "...", "a": "...", "b": "...", "preferred": "a"}
    {"prompt": "...", "responses": ["...", "...", "..."], "ranking": [2, 0, 1]}

The request part is read by the package's own parsers
(:meth:`~ray_judge.verdict.JudgeRequest.from_mapping`,
:meth:`~ray_judge.verdict.GroupRequest.from_mapping`) and checked against its judge
(:meth:`~ray_judge.judging.catalog.JudgeCatalog.check`), so a case reads exactly when
the judge would take the request. Each case carries exactly one label:

* ``label``: the expected score, on the judge's own scale;
* ``range``: ``[low, high]``, the expected score range on the judge's scale;
* ``pass``: true or false (the score is compared with a threshold);
* ``preferred``: ``"a"``, ``"b"`` or ``"tie"``, for a comparison (``a`` and ``b``);
* ``ranking``: for a group (``responses``), the responses' indices from best to worst.

``why`` (a sentence on why the label is what it is) and ``id`` (a short name) are
optional. :func:`read_cases` reads the WHOLE file first: every problem of every line is
collected into one :class:`CasesError`, each naming the line, the field and the bad
value, so nothing is judged from a file that does not read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JudgeError, shown
from ..judging.catalog import JudgeCatalog
from ..verdict import GroupRequest, JudgeRequest

__all__ = ["LABELS", "Case", "CasesError", "parse_cases", "read_cases"]

#: The label keys, and what kind of case each belongs to.
LABELS: Mapping[str, str] = {"label": "score", "range": "score", "pass": "score",
                             "preferred": "compare", "ranking": "group"}
_META = ("why", "id")
#: keys a case may not carry: ``ray-judge eval --backend`` names the backend
_CHOSEN_BY_EVAL = ("backend", "sample")
_KIND_OF_JUDGE = {"score": "pointwise", "group": "group", "compare": "pairwise"}
_DEFAULT_JUDGE = {"score": "default", "group": "group", "compare": "pairwise"}
_MAX_SHOWN = 30


class CasesError(JudgeError, ValueError):
    """A cases file does not read; ``problems`` holds one line per problem
    (``line 7: range: ...``), ``path`` the file."""

    _attrs = ("path", "problems")


@dataclass(frozen=True)
class Case:
    """One labelled case.

    ``kind`` is ``score`` (one response), ``group`` or ``compare``; ``item`` is what
    the judge is sent (a ``score_batch`` item; for a comparison ``compare``'s keyword
    arguments, ``a`` and ``b`` included); ``label`` names the label and ``expected``
    holds it (a float, a ``(low, high)`` pair, a bool, ``"a"``/``"b"``/``"tie"``, or a
    tuple of indices); ``scale`` is the judge's own range.
    """

    line: int
    kind: str
    item: Mapping[str, Any]
    judge: str
    label: str
    expected: Any
    scale: tuple[float, float]
    why: str | None = None
    id: str | None = None

    @property
    def name(self) -> str:
        return self.id or f"line {self.line}"


def read_cases(path: str | Path, catalog: JudgeCatalog, *,
               judge: str | None = None) -> list[Case]:
    """The cases of the file ``path``; :class:`CasesError` listing every problem.

    ``judge`` is the judge of the cases that name none (``None``: the built-in judge
    of their kind).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesError(f"cannot read the cases file {str(path)!r}: {exc}", path=str(path),
                         problems=[str(exc)]) from None
    return parse_cases(text.splitlines(), catalog, judge=judge, source=str(path))


def parse_cases(lines: Iterable[str], catalog: JudgeCatalog, *, judge: str | None = None,
                source: str = "cases") -> list[Case]:
    """:func:`read_cases` for lines already read."""
    cases, problems = [], []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            cases.append(_case(number, text, catalog, judge))
        except (TypeError, ValueError) as exc:
            problems.append(f"line {number}: {exc}")
    if not problems and not cases:
        problems.append("no cases: the file is empty")
    if problems:
        more = len(problems) - _MAX_SHOWN
        listed = problems[:_MAX_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
        raise CasesError(f"{source}: {len(problems)} problem(s), nothing was judged:\n"
                         + "\n".join(listed), path=source, problems=problems)
    return cases


def _case(number: int, text: str, catalog: JudgeCatalog, default: str | None) -> Case:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc}): {shown(text)}") from None
    if not isinstance(data, dict):
        raise TypeError(f"a case must be a JSON object, got {type(data).__name__}: "
                        f"{shown(data)}")
    for key in _CHOSEN_BY_EVAL:
        if key in data:
            raise ValueError(f"{key}: a case does not choose its {key} (ray-judge eval "
                             f"--backend/--samples do), got {shown(data[key])}")
    labels = [k for k in LABELS if k in data]
    if len(labels) != 1:
        found = f"it has {', '.join(labels)}" if labels else "it has none"
        raise ValueError("a case needs exactly one label: label, range or pass (a "
                         "response), preferred (a comparison with a and b) or ranking (a "
                         f"group with responses); {found}")
    (label,) = labels
    why, name = (_text(data, key) for key in _META)
    item = {k: v for k, v in data.items() if k not in (label, *_META)}
    kind = "compare" if "a" in item or "b" in item else (
        "group" if "responses" in item else "score")
    if LABELS[label] != kind:
        raise ValueError(f"{label}: labels a {LABELS[label]} case, but this is a "
                         f"{kind} case" + _KIND_HINT[kind])
    if default is not None and "judge" not in item and kind == "score":
        item["judge"] = default
    judge_name = _request(kind, item, catalog)
    scale = catalog.get(judge_name).scale or (0.0, 1.0)
    expected = _LABEL_READERS[label](data[label], scale, item)
    return Case(number, kind, item, judge_name, label, expected,
                (float(scale[0]), float(scale[1])), why, name)


_KIND_HINT = {"score": " (one response)", "group": " (responses)",
              "compare": " (a and b)"}


def _request(kind: str, item: dict[str, Any], catalog: JudgeCatalog) -> str:
    """Check the request part with the judge's own parsers; its judge's name."""
    name = item.get("judge") or _DEFAULT_JUDGE[kind]
    if isinstance(name, str):
        try:
            definition = catalog.get(name)
        except ValueError as exc:
            raise ValueError(f"judge: {exc}") from None
        if definition.kind != _KIND_OF_JUDGE[kind]:
            raise ValueError(f"judge: {name!r} is a {definition.kind} judge; a {kind} case "
                             f"needs a {_KIND_OF_JUDGE[kind]} judge")
    try:
        if kind == "compare":
            for side in ("a", "b"):
                if side not in item:
                    raise ValueError(f"request is missing the field {side!r}")
            pair = {k: v for k, v in item.items() if k not in ("a", "b")}
            GroupRequest.from_mapping({**pair, "responses": [item["a"], item["b"]]})
        elif kind == "group":
            GroupRequest.from_mapping(item)
        else:
            catalog.check(JudgeRequest.from_mapping(item))
    except (TypeError, ValueError) as exc:
        message = str(exc).replace("request.", "")
        for prefix in ("request is ", "request has ", "request "):
            message = message.removeprefix(prefix)
        if message.startswith("unknown field"):
            message += "; and one label (" + ", ".join(LABELS) + "), why, id"
        raise type(exc)(message) from None
    return str(name)


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {type(value).__name__}: "
                        f"{shown(value)}")
    return value


def _number(value: object, where: str, scale: tuple[float, float]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise TypeError(f"{where} must be a number on the judge's scale "
                        f"[{scale[0]:g}, {scale[1]:g}], got {shown(value)}")
    if not scale[0] <= value <= scale[1]:
        raise ValueError(f"{where} must be within the judge's scale "
                         f"[{scale[0]:g}, {scale[1]:g}], got {value!r}")
    return float(value)


def _label(value: object, scale: tuple[float, float], item: Mapping[str, Any]) -> float:
    return _number(value, "label", scale)


def _range(value: object, scale: tuple[float, float],
           item: Mapping[str, Any]) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"range must be [low, high], got {shown(value)}")
    low, high = (_number(v, "range", scale) for v in value)
    if low > high:
        raise ValueError(f"range must be [low, high] with low <= high, got {shown(value)}")
    return low, high


def _pass(value: object, scale: tuple[float, float], item: Mapping[str, Any]) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"pass must be true or false, got {shown(value)}")
    return value


def _preferred(value: object, scale: tuple[float, float], item: Mapping[str, Any]) -> str:
    if value not in ("a", "b", "tie"):
        raise ValueError(f"preferred must be \"a\", \"b\" or \"tie\", got {shown(value)}")
    return str(value)


def _ranking(value: object, scale: tuple[float, float],
             item: Mapping[str, Any]) -> tuple[int, ...]:
    n = len(item["responses"])
    if (not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int)
                                           for i in value)
            or sorted(value) != list(range(n))):
        raise ValueError(f"ranking must list the indices of the {n} responses from best to "
                         f"worst, each once (e.g. {list(range(n))[::-1]}), got {shown(value)}")
    return tuple(value)


_LABEL_READERS = {"label": _label, "range": _range, "pass": _pass, "preferred": _preferred,
                  "ranking": _ranking}
