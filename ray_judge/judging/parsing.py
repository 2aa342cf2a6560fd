"""Read the judge's verdict: the number on the last ``SCORE: N`` line of its answer.

A *score line* is a line that, once markdown decoration is stripped (leading ``#``,
``>``, list bullets, ``*``/``_`` emphasis, backticks), starts with the word ``score``
(any case) followed by ``:`` or ``=``. Only such lines count: ``Reward: 10``,
``Final score: 8`` or "I would give it SCORE: 8" are not score lines, because the
judge is told to end with exactly ``SCORE: N`` and every extra shape we accept is
one more way to read a number the judge did not mean as its verdict.

The value of a score line is an unsigned ASCII number (``7``, ``7.5``, ``.5``), optionally
written as a fraction of the scale (``8/10``, ``8 out of 10``, denominator equal to
``score_max``), optionally followed by one full stop and closing decoration. Anything
else on the line (``8.5.3``, ``8-9``, ``8 (good)``, ``N/A``, ``eight``) makes it an
invalid score line. Lines inside fenced code blocks (````` ``` ````` or ``~~~``) are
quoted material, not the judge's verdict, and never count.
"""

from __future__ import annotations

import math
import re

from ..errors import ScoreParseError, excerpt

__all__ = ["normalise", "parse_score"]

# Decoration a model puts around "SCORE": headings, quotes, bullets, emphasis, code.
_LEAD = re.compile(r"[\s>#*_`+\-•]*")
_EMPHASIS = "*_`"
_KEYWORD = "score"
_SEPARATORS = (":", "=", "\uff1a")  # U+FF1A: the full-width colon some models emit
_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
# re.ASCII: float() accepts other scripts' digits, but a judge writing "٨" is not
# following the format, and silently accepting it hides that.
_VALUE = re.compile(
    rf"(?P<sign>[+-]?)(?P<num>{_NUMBER})"
    rf"(?:\s*/\s*(?P<slash>{_NUMBER})|\s+out\s+of\s+(?P<outof>{_NUMBER}))?",
    re.ASCII | re.IGNORECASE,
)
_FENCE = re.compile(r" {0,3}(?P<marker>`{3,}|~{3,})(?P<rest>.*)")


def parse_score(text: str, score_max: float = 10.0) -> float:
    """Return the raw score ``N`` (``0 <= N <= score_max``) of the last score line.

    Args:
        text: The judge's whole answer.
        score_max: The top of the scale the judge was asked to use.

    Returns:
        The number on the last score line, as a float.

    Raises:
        ScoreParseError: There is no score line, or the last one is not a number within
            ``[0, score_max]``; ``value`` holds that line (``None`` when there is none).
        ValueError: ``score_max`` is not a finite number above 0.
    """
    _check_scale(score_max)
    if not isinstance(text, str):
        raise ScoreParseError(f"judge output must be text, got {type(text).__name__}")
    if not text.strip():
        raise ScoreParseError("judge output is empty")
    last: tuple[str, str] | None = None
    for line, value in _score_lines(text):
        last = (line, value)
    if last is None:
        raise ScoreParseError(
            f"no 'SCORE: N' line in the judge output (starts with {excerpt(text)!r})"
        )
    # The last score line decides, even when it is invalid: a judge that writes
    # "SCORE: 7" and later "SCORE: 8/100" or "SCORE: N/A" has changed its mind or lost
    # the format, and quietly falling back to the earlier number would put a score the
    # judge withdrew into the reward signal. A parse_error is visible and retryable.
    line, value = last
    return _read_value(line, value, score_max)


def normalise(n: float, score_max: float) -> float:
    """Map a raw score ``n`` in ``[0, score_max]`` onto ``[0, 1]``.

    Raises:
        ValueError: ``score_max`` is not a finite number above 0, or ``n`` is outside
            ``[0, score_max]``.
    """
    _check_scale(score_max)
    if not (isinstance(n, (int, float)) and 0 <= n <= score_max):
        raise ValueError(f"n must be a number within [0, {score_max}], got {n!r}")
    # Correctly rounded division is monotonic, so n <= score_max gives a result <= 1.0.
    return float(n) / float(score_max)


def _check_scale(score_max: float) -> None:
    if not (
        isinstance(score_max, (int, float))
        and not isinstance(score_max, bool)
        and math.isfinite(score_max)
        and score_max > 0
    ):
        raise ValueError(f"score_max must be a finite number > 0, got {score_max!r}")


def _score_lines(text: str):
    """Yield ``(line, text after the separator)`` for every score line outside fences."""
    fence: str | None = None
    for line in text.splitlines():
        fenced = _FENCE.fullmatch(line)
        if fence is not None:
            # A fence closes with the same character, at least as long, nothing after it.
            if fenced and fenced["marker"][0] == fence[0] and len(fenced["marker"]) >= len(
                fence
            ) and not fenced["rest"].strip():
                fence = None
            continue
        # A backtick "fence" whose info string holds a backtick is inline code
        # (CommonMark), e.g. "```SCORE: 8```", so it opens nothing.
        if fenced and not (fenced["marker"][0] == "`" and "`" in fenced["rest"]):
            fence = fenced["marker"]
            continue
        head = line[_LEAD.match(line).end():]
        if head[: len(_KEYWORD)].lower() != _KEYWORD:
            continue
        rest = _strip_decoration(head[len(_KEYWORD):], right=False)
        if rest.startswith(_SEPARATORS):
            yield line, rest[1:]


def _read_value(line: str, value: str, score_max: float) -> float:
    shown = line.strip()
    # Strip closing decoration, one full stop, then decoration again, so that
    # "**8**." and "8.**" both leave "8"; "8.." keeps a dot and is rejected.
    core = _strip_decoration(_strip_decoration(value).removesuffix("."))
    match = _VALUE.fullmatch(core)
    if match is None:
        raise ScoreParseError(
            f"the last SCORE line does not hold a plain number: {excerpt(shown)!r}",
            value=shown,
        )
    if match["sign"] == "-":
        raise ScoreParseError(f"the score is negative: {excerpt(shown)!r}", value=shown)
    denominator = match["slash"] or match["outof"]
    if denominator is not None and float(denominator) != float(score_max):
        raise ScoreParseError(
            f"the score is out of {denominator} but the scale is 0-{score_max:g}: "
            f"{excerpt(shown)!r}",
            value=shown,
        )
    score = float(match["num"])  # an absurdly long number becomes inf: out of range
    if not score <= score_max:
        raise ScoreParseError(
            f"the score is above the scale's maximum {score_max:g}: {excerpt(shown)!r}",
            value=shown,
        )
    return score


def _strip_decoration(text: str, *, right: bool = True) -> str:
    # A scan rather than a regex such as r"[\s*_`]+$", which is quadratic on a long
    # run of spaces followed by anything else.
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or text[start] in _EMPHASIS):
        start += 1
    while right and end > start and (text[end - 1].isspace() or text[end - 1] in _EMPHASIS):
        end -= 1
    return text[start:end]
