"""Bad input, generated: the spec parser and the override file on disk.

Two properties, each over inputs hypothesis makes up:

* the spec parser either raises :class:`InvalidSpecError` that names the value, or
  returns a spec that round-trips through ``str``;
* whatever sits at the override file's path (random bytes, a huge file, a symlink to a
  good file, to nothing or in a loop, a directory, a FIFO), the resolver never raises,
  keeps the last good backend unless the file names a valid one, and says what is wrong.

The third, request fields through the real judge actor, is tests/pool/test_properties_pool.py.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ray_judge import BackendSpec, InvalidSpecError
from ray_judge.config import JudgeConfig
from ray_judge.selection.override_file import MAX_FILE_BYTES, permission_warnings
from ray_judge.selection.resolver import BackendResolver
from ray_judge.spec import CCODE_MODELS, MAX_SPEC_LENGTH

GOOD = BackendSpec.parse("litellm:openai/last-good")
ENV_SPEC = BackendSpec.parse("ccode-4-opus")

# ------------------------------------------------------------------------ spec parser

#: Text that looks like a spec often enough to reach every branch of the parser.
spec_like = st.one_of(
    st.text(max_size=300),
    st.builds("litellm:{}".format, st.text(max_size=300)),
    st.builds("{}{}{}".format, st.sampled_from(["", " ", "\t", "\n", "\r\n", "\x00"]),
              st.sampled_from([*CCODE_MODELS, "litellm:openai/gpt-4o", "ccode-9", "litellm:"]),
              st.sampled_from(["", "\n", "\r\n", " \n", "\n\n", "\u2028", " x", "\x85"])),
    st.builds(lambda ch, n: "litellm:" + ch * n, st.characters(), st.integers(200, 300)),
)


@settings(max_examples=500, deadline=None)
@given(spec_like)
def test_a_spec_parses_and_round_trips_or_the_error_names_the_value(text: str) -> None:
    try:
        spec = BackendSpec.parse(text)
    except InvalidSpecError as exc:
        assert exc.value == text and exc.name == "spec"
        message = str(exc)
        assert repr(text)[:40] in message, message  # the bad value, quoted, escapes visible
        assert len(message.splitlines()) == 1, message  # one line, whatever the input
        assert pickle.loads(pickle.dumps(exc)).value == text
        return
    assert spec.kind in ("ccode", "litellm")
    assert BackendSpec.parse(str(spec)) == spec
    assert str(spec) == text.strip(" \t\r\n")
    assert 0 < len(str(spec)) <= MAX_SPEC_LENGTH
    assert pickle.loads(pickle.dumps(spec)) == spec


@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.booleans(),
                 st.lists(st.text(max_size=5), max_size=3)))
def test_a_non_string_spec_is_an_invalid_spec_error(value: object) -> None:
    with pytest.raises(InvalidSpecError, match="expected a string"):
        BackendSpec.parse(value)


# ---------------------------------------------------------------------- override file

KINDS = ("bytes", "huge", "symlink_to_good", "symlink_to_bytes", "symlink_to_nothing",
         "symlink_loop", "symlink_to_itself", "directory", "fifo", "device")

file_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(lambda pre, post: pre + str(ENV_SPEC).encode() + post,
              st.sampled_from([b"", b"\xef\xbb\xbf", b" ", b"\x00"]),
              st.sampled_from([b"", b"\n", b"\r\n", b"\n\n", b"\xff", b" junk\n"])),
    st.sampled_from([b"litellm:openai/from-file\n", b"ccode-4-haiku", b""]),
)


def _place(path: Path, kind: str, content: bytes) -> None:
    """Put something of ``kind`` at ``path`` (which does not exist yet)."""
    other = path.with_name("target")
    if kind == "bytes":
        path.write_bytes(content)
    elif kind == "huge":
        with path.open("wb") as f:  # sparse: megabytes on paper, nothing on disk
            f.write(content[:1] or b"x")
            f.truncate(64 << 20)
    elif kind == "symlink_to_good":
        other.write_text("litellm:openai/via-link\n")
        path.symlink_to(other)
    elif kind == "symlink_to_bytes":
        other.write_bytes(content)
        path.symlink_to(other)
    elif kind == "symlink_to_nothing":
        path.symlink_to(path.with_name("missing"))
    elif kind == "symlink_loop":
        other.symlink_to(path)
        path.symlink_to(other)
    elif kind == "symlink_to_itself":
        path.symlink_to(path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(content)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")  # endless bytes: only a bounded read survives it
    else:  # pragma: no cover - a typo in KINDS
        raise AssertionError(kind)


def _valid(content: bytes) -> BackendSpec | None:
    try:
        return BackendSpec.parse(content.decode("utf-8"))
    except (UnicodeDecodeError, InvalidSpecError):
        return None


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), content=file_bytes)
def test_whatever_is_at_the_override_path_the_resolver_keeps_the_last_good_backend(
        kind: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="rjprop") as tmp:
        path = Path(tmp) / ".judge_backend"
        config = JudgeConfig.from_env({"LLM_JUDGE_BACKEND_FILE": str(path),
                                       "LLM_JUDGE_NAME": str(ENV_SPEC),
                                       "LLM_JUDGE_BACKEND_TTL": "0"})
        resolver = BackendResolver(config)
        path.write_text(f"{GOOD}\n")
        assert resolver.resolve().spec == GOOD
        path.unlink()
        _place(path, kind, content)

        resolution = resolver.refresh()
        assert resolver.resolve().spec == resolution.spec  # and again, without raising
        expected = {"bytes": _valid(content), "symlink_to_bytes": _valid(content),
                    "symlink_to_good": BackendSpec.parse("litellm:openai/via-link")}.get(kind)
        if expected is not None:
            assert (resolution.spec, resolution.source, resolution.problem) == (
                expected, "file", None)
        else:
            # Not a usable file: the last good backend stays, and the problem is named.
            assert (resolution.spec, resolution.source) == (GOOD, "file"), resolution
            assert resolution.problem and str(path) in resolution.problem, resolution
        assert isinstance(permission_warnings(path), list)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "symlink_to_good"])
def test_a_bad_override_at_first_start_falls_back_and_says_why(tmp_path, kind) -> None:
    path = tmp_path / ".judge_backend"
    _place(path, kind, b"\xff\xfe not a spec")
    config = JudgeConfig.from_env({"LLM_JUDGE_BACKEND_FILE": str(path),
                                   "LLM_JUDGE_NAME": str(ENV_SPEC)})
    resolution = BackendResolver(config).resolve()
    assert (resolution.spec, resolution.source) == (ENV_SPEC, "env")
    assert resolution.problem and str(path) in resolution.problem


def test_the_bounded_read_is_what_protects_the_hot_path(tmp_path) -> None:
    # A sanity check on the generator above: "huge" really is beyond the bound.
    path = tmp_path / ".judge_backend"
    _place(path, "huge", b"x")
    assert path.stat().st_size > 1000 * MAX_FILE_BYTES
