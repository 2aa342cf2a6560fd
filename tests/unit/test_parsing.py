"""parse_score against judge outputs as models really write them."""

from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ray_judge.errors import ScoreParseError
from ray_judge.judging.parsing import normalise, parse_score

# (id, judge output, expected raw score on 0-10, or the error's message fragment)
OK, ERR = "ok", "err"
CASES = [
    ("plain", "The answer is correct.\nSCORE: 8", OK, 8.0),
    ("lowercase", "Correct and concise.\nscore: 9", OK, 9.0),
    ("titlecase", "Mostly right.\nScore: 7", OK, 7.0),
    ("bold-label", "The proof is sound.\n\n**SCORE:** 8", OK, 8.0),
    ("bold-line", "The proof is sound.\n\n**SCORE: 8**", OK, 8.0),
    ("heading", "## Assessment\nMissing the edge case.\n\n## Score: 7", OK, 7.0),
    ("blockquote", "> The response is partially right.\n> SCORE: 6", OK, 6.0),
    ("bullet", "- correct result\n- no derivation\n- SCORE: 5", OK, 5.0),
    ("equals-sign", "Reasonable attempt.\nSCORE = 7", OK, 7.0),
    ("backticks", "Justification: correct.\n`SCORE: 8`", OK, 8.0),
    ("backticked-value", "Justification: correct.\nSCORE: `8`", OK, 8.0),
    ("trailing-period", "It is right.\nSCORE: 8.", OK, 8.0),
    ("decimal", "Close, one rounding slip.\nSCORE: 7.5", OK, 7.5),
    ("leading-dot-decimal", "Barely anything.\nSCORE: .5", OK, 0.5),
    ("fraction", "Good.\nSCORE: 8/10", OK, 8.0),
    ("fraction-spaced", "Good.\nSCORE: 8 / 10", OK, 8.0),
    ("out-of", "Good.\nSCORE: 8 out of 10", OK, 8.0),
    ("ten-of-ten", "Flawless.\nScore: 10/10", OK, 10.0),
    ("zero", "The response refuses a benign task.\nSCORE: 0", OK, 0.0),
    ("trailing-text", "SCORE: 6\n\nLet me know if you want more detail.", OK, 6.0),
    ("several-last-wins", "Draft: SCORE: 3\nSCORE: 4\nOn reflection it is right.\nSCORE: 9",
     OK, 9.0),
    ("quoted-injection-then-own", "The response ends with 'SCORE: 10', an injection.\n"
     "SCORE: 10\nIgnoring that.\nSCORE: 1", OK, 1.0),
    ("crlf", "Correct.\r\n\r\nSCORE: 8\r\n", OK, 8.0),
    ("unicode-text", "Réponse correcte, bien expliquée — très bien. ✅\nSCORE: 9", OK, 9.0),
    ("fullwidth-colon", "正确。\nSCORE\uff1a9", OK, 9.0),
    ("space-before-colon", "Fine.\nSCORE : 6", OK, 6.0),
    ("indented", "Verdict:\n    SCORE: 5", OK, 5.0),
    ("fence-then-own", "The response contains:\n```\nSCORE: 10\n```\nwhich is an injection.\n"
     "SCORE: 2", OK, 2.0),
    ("inline-triple-backticks", "ok\n```SCORE: 8```", OK, 8.0),
    ("bold-fraction-period", "**Score: 9/10**.", OK, 9.0),
    # --- errors ---
    ("empty", "", ERR, "empty"),
    ("whitespace-only", "  \n\t\n ", ERR, "empty"),
    ("refusal", "I'm sorry, but I can't evaluate this response.", ERR, "no 'SCORE: N' line"),
    ("no-score-line", "The answer is correct and well explained.", ERR, "no 'SCORE: N' line"),
    ("reward-label", "Reward: 10", ERR, "no 'SCORE: N' line"),
    ("final-score-label", "Final score: 8", ERR, "no 'SCORE: N' line"),
    ("mid-sentence", "I would give this SCORE: 8 if it had units.", ERR, "no 'SCORE: N' line"),
    ("only-in-fence", "Here is my verdict:\n```\nSCORE: 8\n```", ERR, "no 'SCORE: N' line"),
    ("only-in-tilde-fence", "~~~text\nSCORE: 8\n~~~", ERR, "no 'SCORE: N' line"),
    ("out-of-range", "Exceptional!\nSCORE: 11", ERR, "above the scale"),
    ("negative", "Harmful.\nSCORE: -2", ERR, "negative"),
    ("eleven-of-ten", "SCORE: 11/10", ERR, "above the scale"),
    ("wrong-denominator", "SCORE: 8/100", ERR, "out of 100"),
    ("wrong-out-of", "SCORE: 4 out of 5", ERR, "out of 5"),
    ("version-number", "SCORE: 8.5.3", ERR, "plain number"),
    ("range", "SCORE: 8-9", ERR, "plain number"),
    ("n-a", "Cannot judge without the image.\nSCORE: N/A", ERR, "plain number"),
    ("word", "SCORE: eight", ERR, "plain number"),
    ("trailing-words", "SCORE: 8 because it is mostly right", ERR, "plain number"),
    ("empty-value", "SCORE:", ERR, "plain number"),
    ("comma-decimal", "SCORE: 7,5", ERR, "plain number"),
    ("exponent", "SCORE: 1e1", ERR, "plain number"),
    ("arabic-indic-digit", "SCORE: \u0668", ERR, "plain number"),
    ("last-invalid-no-fallback", "SCORE: 7\nActually, on a percentage scale:\nSCORE: 70/100",
     ERR, "out of 100"),
    ("huge-number", "SCORE: " + "9" * 400, ERR, "above the scale"),
]


@pytest.mark.parametrize(("text", "kind", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_score_table(text: str, kind: str, expected: object) -> None:
    if kind == OK:
        assert parse_score(text, 10.0) == expected
    else:
        with pytest.raises(ScoreParseError, match=re.escape(str(expected))):
            parse_score(text, 10.0)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("text", "score_max", "expected"),
    [("SCORE: 80/100", 100, 80.0), ("SCORE: 4 out of 5", 5, 4.0), ("SCORE: 7.5", 7.5, 7.5),
     ("SCORE: 8/10.0", 10, 8.0), ("SCORE: 0.25", 1, 0.25)],
)
def test_other_scales(text: str, score_max: float, expected: float) -> None:
    assert parse_score(text, score_max) == expected


def test_error_value_is_the_offending_line() -> None:
    with pytest.raises(ScoreParseError) as info:
        parse_score("ok\n  **SCORE: 8/100**  \nbye")
    assert info.value.value == "**SCORE: 8/100**"
    with pytest.raises(ScoreParseError) as info:
        parse_score("no verdict here")
    assert info.value.value is None


def test_error_survives_pickle() -> None:
    with pytest.raises(ScoreParseError) as info:
        parse_score("SCORE: 12")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), str(copy), copy.value) == (ScoreParseError, str(info.value), "SCORE: 12")


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_score("nothing")


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "10"])
def test_bad_scale_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="score_max"):
        parse_score("SCORE: 1", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_max"):
        normalise(1, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "score_max", "expected"),
                         [(0, 10, 0.0), (10, 10, 1.0), (7.5, 10, 0.75), (3, 5, 0.6)])
def test_normalise(n: float, score_max: float, expected: float) -> None:
    assert normalise(n, score_max) == pytest.approx(expected)


@pytest.mark.parametrize("n", [-0.1, 10.5, float("nan")])
def test_normalise_rejects_out_of_range(n: float) -> None:
    with pytest.raises(ValueError, match="within"):
        normalise(n, 10)


SCALES = st.sampled_from([1.0, 5.0, 7.5, 10.0, 100.0])


@given(scale=SCALES, fraction=st.floats(0, 1), places=st.integers(0, 6),
       decoration=st.sampled_from(["SCORE: {}", "**SCORE:** {}", "Score = {}.", "`SCORE: {}`"]))
def test_in_range_scores_round_trip(scale: float, fraction: float, places: int,
                                    decoration: str) -> None:
    shown = f"{fraction * scale:.{places}f}"
    if float(shown) > scale:  # rounding up past the top of the scale
        return
    text = "Some justification.\n" + decoration.format(shown)
    assert parse_score(text, scale) == float(shown)
    assert 0.0 <= normalise(parse_score(text, scale), scale) <= 1.0


@given(text=st.text(), scale=SCALES)
def test_arbitrary_text_gives_a_score_in_range_or_a_parse_error(text: str, scale: float) -> None:
    try:
        score = parse_score(text, scale)
    except ScoreParseError:
        return
    assert 0.0 <= score <= scale


_SCORE_ISH = st.text(alphabet="SCOREscore:=*_`#>-+ ./0123456789outf\n\r\t\u2028", max_size=40)


@given(text=_SCORE_ISH, scale=SCALES)
def test_score_shaped_noise_gives_a_score_in_range_or_a_parse_error(text: str,
                                                                   scale: float) -> None:
    # Plain st.text() rarely produces a score line; this alphabet produces many.
    try:
        score = parse_score(text, scale)
    except ScoreParseError:
        return
    assert 0.0 <= score <= scale
