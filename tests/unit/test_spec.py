"""The backend spec grammar: what parses, what is rejected and how the error reads."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ray_judge.config import JudgeConfig
from ray_judge.errors import ConfigError, InvalidSpecError
from ray_judge.spec import (
    CCODE_MODELS,
    DEFAULT_SPEC,
    MAX_SPEC_LENGTH,
    BackendSpec,
    parse_ccode_model_overrides,
)

ACCEPTED = [
    ("ccode-4-sonnet", "ccode", "ccode-4-sonnet"),
    ("ccode-4-opus", "ccode", "ccode-4-opus"),
    ("ccode-4-haiku", "ccode", "ccode-4-haiku"),
    ("litellm:anthropic/claude-3-opus-20240229", "litellm", "anthropic/claude-3-opus-20240229"),
    ("litellm:openai/gpt-4o", "litellm", "openai/gpt-4o"),
    ("litellm:hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "litellm",
     "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"),
    ("  ccode-4-sonnet  ", "ccode", "ccode-4-sonnet"),
    ("\tlitellm:openai/gpt-4o\t", "litellm", "openai/gpt-4o"),
    ("ccode-4-sonnet\n", "ccode", "ccode-4-sonnet"),
    ("litellm:openai/gpt-4o\r\n", "litellm", "openai/gpt-4o"),
    ("  litellm:openai/gpt-4o \n", "litellm", "openai/gpt-4o"),
    ("litellm:" + "m" * (MAX_SPEC_LENGTH - len("litellm:")), "litellm",
     "m" * (MAX_SPEC_LENGTH - len("litellm:"))),
]


@pytest.mark.parametrize(("text", "kind", "name"), ACCEPTED)
def test_accepted(text: str, kind: str, name: str) -> None:
    spec = BackendSpec.parse(text)
    assert (spec.kind, spec.name) == (kind, name)


REJECTED = [
    ("", "empty"),
    ("   ", "empty"),
    ("\n", "empty"),
    ("\t \r\n", "empty"),
    ("litellm:openai/gpt 4o", "whitespace"),
    ("litellm:openai/gpt-4o\nccode-4-sonnet", "whitespace"),
    ("ccode-4-sonnet\n\n", "whitespace"),
    ("litellm:open\tai", "whitespace"),
    ("litellm:a\x00b", "control character"),
    ("litellm:a\x1b[31mb", "control character"),
    ("litellm:a\x7fb", "control character"),
    ("ccode-4-sonnet\x00", "control character"),
    ("openai/gpt-4o", "unknown backend prefix"),
    ("LiteLLM:openai/gpt-4o", "unknown backend prefix"),
    ("vllm:Qwen/Qwen2.5", "unknown backend prefix"),
    ("sonnet", "unknown backend prefix"),
    ("ccode-5-sonnet", "unknown Claude Code alias"),
    ("ccode", "unknown Claude Code alias"),
    ("CCODE-4-SONNET", "unknown backend prefix"),
    ("litellm:", "model is empty"),
    ("litellm:\n", "model is empty"),
    ("litellm:" + "m" * MAX_SPEC_LENGTH, f"longer than {MAX_SPEC_LENGTH}"),
    ("x" * 10_000, f"longer than {MAX_SPEC_LENGTH}"),
]


@pytest.mark.parametrize(("text", "why"), REJECTED)
def test_rejected_with_the_bad_value_and_the_accepted_forms(text: str, why: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        BackendSpec.parse(text)
    message = str(info.value)
    assert why in message
    assert repr(text)[:40] in message  # the bad value, quoted and escaped, is shown
    assert "accepted forms" in message
    assert "\n" not in message  # one line, whatever the input held
    assert info.value.value == text
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("value", [None, 42, b"ccode-4-sonnet", ["ccode-4-sonnet"]])
def test_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidSpecError, match="expected a string"):
        BackendSpec.parse(value)


@pytest.mark.parametrize("text", [t for t, _, _ in ACCEPTED] + sorted(CCODE_MODELS))
def test_round_trip(text: str) -> None:
    spec = BackendSpec.parse(text)
    assert BackendSpec.parse(str(spec)) == spec
    assert str(BackendSpec.parse(str(spec))) == str(spec)


@given(st.text(max_size=300) | st.builds("litellm:{}".format, st.text(max_size=300)))
def test_parse_raises_or_round_trips(text: str) -> None:
    try:
        spec = BackendSpec.parse(text)
    except InvalidSpecError:
        return
    assert BackendSpec.parse(str(spec)) == spec
    assert len(str(spec)) <= MAX_SPEC_LENGTH


@pytest.mark.parametrize("text", ["ccode-4-opus", "litellm:openai/gpt-4o"])
def test_pickle_round_trip(text: str) -> None:
    spec = BackendSpec.parse(text)
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_pickle_round_trip_of_the_error() -> None:
    with pytest.raises(InvalidSpecError) as info:
        BackendSpec.parse("nope")
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is InvalidSpecError
    assert (str(again), again.value) == (str(info.value), "nope")


def test_constructors_go_through_the_grammar() -> None:
    assert BackendSpec.ccode() == BackendSpec.parse(DEFAULT_SPEC)
    assert BackendSpec.litellm("openai/gpt-4o") == BackendSpec.parse("litellm:openai/gpt-4o")
    with pytest.raises(InvalidSpecError):
        BackendSpec.litellm("gpt 4o")
    with pytest.raises(InvalidSpecError):
        BackendSpec("litellm", "")


@pytest.mark.parametrize(("text", "model"), [
    ("ccode-4-sonnet", CCODE_MODELS["ccode-4-sonnet"]),
    ("ccode-4-opus", CCODE_MODELS["ccode-4-opus"]),
    ("litellm:openai/gpt-4o", "openai/gpt-4o"),
])
def test_model_without_overrides(text: str, model: str) -> None:
    assert BackendSpec.parse(text).model() == model


OVERRIDES = [
    ("claude-sonnet-4-5", {"ccode-4-sonnet": "claude-sonnet-4-5",
                           "ccode-4-opus": "claude-sonnet-4-5"}),
    ("ccode-4-opus=claude-opus-4-1", {"ccode-4-sonnet": CCODE_MODELS["ccode-4-sonnet"],
                                       "ccode-4-opus": "claude-opus-4-1"}),
    (" ccode-4-sonnet = s1 , ccode-4-opus=o1 ,", {"ccode-4-sonnet": "s1", "ccode-4-opus": "o1"}),
    ("", {"ccode-4-sonnet": CCODE_MODELS["ccode-4-sonnet"]}),
]


@pytest.mark.parametrize(("env_value", "expected"), OVERRIDES)
def test_ccode_model_overrides(env_value: str, expected: dict[str, str]) -> None:
    config = JudgeConfig.from_env({"LLM_JUDGE_CCODE_MODEL": env_value})
    for alias, model in expected.items():
        assert BackendSpec.parse(alias).model(config.ccode_models) == model
    # LiteLLM models are never rewritten by the ccode mapping.
    assert BackendSpec.parse("litellm:x/y").model(config.ccode_models) == "x/y"


@pytest.mark.parametrize(("env_value", "shown"), [
    ("ccode-9-bogus=x", "ccode-9-bogus"),
    ("ccode-4-sonnet=", "''"),
    ("ccode-4-sonnet=a b", "'a b'"),
])
def test_bad_ccode_model_overrides_name_the_variable(env_value: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ccode_model_overrides(env_value)
    assert "LLM_JUDGE_CCODE_MODEL" in str(info.value)
    assert shown in str(info.value)
