"""Untrusted text made unable to write a block marker, even through Unicode look-alikes.

Data goes to the judge between our markers, ``<<<BEGIN NAME>>>`` and ``<<<END NAME>>>``.
The policy writes much of that data and RL policies learn to attack their judge, so no
data may hold a marker, as written or as a model reads it: after Unicode normalisation
(NFKC, then dropping invisible format characters, category Cf, and combining marks,
category Mn). The rule, per character of the text:

* an *angle* is a character whose NFKD form without Cf and Mn is ``<`` (``<``, fullwidth
  U+FF1C, small form U+FE64, ``≮`` U+226E) or ``>`` (U+FF1E, U+FE65, U+226F);
* an *invisible* is one whose NFKD form is all Cf and Mn (U+200B, U+0301, also U+FF9E);
* a *run* is three or more angles of one direction joined only by invisibles.

In a run each ``<`` angle becomes U+2039 (single left-pointing angle quotation mark),
each ``>`` angle U+203A (single right-pointing), and each invisible in it or right after
it an escape such as ``\\u200b``. On a line that holds a run every Cf character is shown
as an escape too: a zero-width space inside a marker word, a right-to-left override that
turns ``>>>ESNOPSER DNE<<<`` around. A forged ``<<<END RESPONSE>>>`` thus stays visible to
the judge, its angles now quotation marks, and is no longer a marker, before or after
normalisation. Text without a run (any language, emoji joined by U+200D, accents as
combining marks, ``a << b``) is returned unchanged. The rewrite is deterministic
(prompts feed a cache key).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["data_block", "neutralise"]

_OPEN = "<\u226e\ufe64\uff1c"
_CLOSE = ">\u226f\ufe65\uff1e"
_SHOWN = {**dict.fromkeys(_OPEN, "\u2039"), **dict.fromkeys(_CLOSE, "\u203a")}
_DROPPED = ("Cf", "Mn")

# ASCII holds no invisible and no other angle: there a run is a plain run. Written with
# a literal head (not <{3,}), which re searches for several times faster.
_ASCII_RUNS = (("<<<", re.compile("<<<<*")), (">>>", re.compile(">>>>*")))
# Elsewhere a stretch of three or more angles of one direction with only non-ASCII
# characters between them (every invisible is one) may hold runs; each stretch is then
# read character by character. Plain text rarely has one, so that loop rarely runs.
# One pattern per direction: each starts with a character class that re scans for fast.
_BETWEEN = f"[^\\x00-\\x7f{_OPEN[1:]}{_CLOSE[1:]}]*"
_NOT_ASCII = re.compile("[^\\x00-\\x7f]")
_STRETCHES = tuple(re.compile(f"[{kind}](?:{_BETWEEN}[{kind}]){{2,}}")
                   for kind in (_OPEN, _CLOSE))


def neutralise(text: str) -> str:
    """``text`` without a run of three or more ``<`` or ``>``, as written or after Unicode
    normalisation: it holds no block marker (see the module docstring for the rule).

    Used for every data block, and for text of ours that quotes untrusted text outside
    a block (a correction turn quoting a parse error that quotes the answer).
    """
    if text.isascii():
        for run, pattern in _ASCII_RUNS:
            if run in text:
                text = pattern.sub(lambda m: _SHOWN[m.group()[0]] * len(m.group()), text)
        return text
    runs = [run for pattern in _STRETCHES for stretch in pattern.finditer(text)
            for run in _runs(text, *stretch.span())]
    if not runs:
        return text
    shown: dict[int, str] = {}
    lines = set()
    for first, last in runs:
        end = last
        while end < len(text) and _invisible(text[end]):
            end += 1
        shown.update((i, _SHOWN.get(text[i]) or _escape(text[i])) for i in range(first, end))
        line = text.rfind("\n", 0, first) + 1
        if line not in lines:
            lines.add(line)
            stop = text.find("\n", last)
            for match in _NOT_ASCII.finditer(text, line, len(text) if stop < 0 else stop):
                if unicodedata.category(match.group()) == "Cf":
                    shown.setdefault(match.start(), _escape(match.group()))
    out = []
    done = 0
    for i in sorted(shown):
        out += (text[done:i], shown[i])
        done = i + 1
    out.append(text[done:])
    return "".join(out)


def _runs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The runs in ``text[start:end]``, a stretch that begins and ends with an angle."""
    kind = _OPEN if text[start] in _OPEN else _CLOSE
    runs = []
    first = last = start  # the current chain's first and last angle
    count = 0
    for i in range(start, end):
        char = text[i]
        if char in kind:
            if count == 0:
                first = i
            count += 1
            last = i
        elif not _invisible(char):
            if count >= 3:
                runs.append((first, last + 1))
            count = 0
    if count >= 3:
        runs.append((first, last + 1))
    return runs


def _invisible(char: str) -> bool:
    return all(unicodedata.category(c) in _DROPPED
               for c in unicodedata.normalize("NFKD", char))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def data_block(name: str, text: str, max_chars: int) -> str:
    """``text`` between ``<<<BEGIN NAME>>>`` and ``<<<END NAME>>>``, cut to ``max_chars``
    with a visible marker, neutralised (:func:`neutralise`) so that no data
    opens or closes a block."""
    body = neutralise(_truncate(text, max_chars))
    if len(body) > max_chars:
        # Escaped invisibles made it longer (only in text that forged markers): cut the
        # neutralised text instead, so that forging cannot buy a longer prompt. Cutting
        # cannot make a run: the truncation marker starts and ends with a line break.
        body = _truncate(neutralise(text), max_chars)
    return f"<<<BEGIN {name}>>>\n{body}\n<<<END {name}>>>"


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    # Size the marker for the longest possible count so head + marker + tail never
    # exceeds max_chars; the real count can only be as long or shorter.
    room = max_chars - len(_marker(len(text)))
    cut = len(text) - room
    tail = room // 2
    return text[: room - tail] + _marker(cut) + text[len(text) - tail:]


def _marker(cut: int) -> str:
    return f"\n[... truncated {cut} characters ...]\n"
