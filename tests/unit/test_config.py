"""JudgeConfig.from_env: defaults, the override file's path, and every bad number named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_judge.config import JudgeConfig
from ray_judge.errors import ConfigError
from ray_judge.spec import BackendSpec


def test_defaults(tmp_path: Path) -> None:
    config = JudgeConfig.from_env({}, cwd=tmp_path)
    assert config.default_spec == BackendSpec.parse("ccode-4-sonnet")
    assert config.default_source == "default"
    assert config.backend_file == tmp_path / ".judge_backend"
    assert config.ttl_s == 5.0
    assert config.claude_cli_path == "claude"
    assert dict(config.ccode_models) == {}


def test_reads_os_environ_and_cwd_when_given_nothing(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("LLM_JUDGE_NAME", "litellm:openai/gpt-4o")
    monkeypatch.setenv("LLM_JUDGE_BACKEND_TTL", "0.25")
    monkeypatch.setenv("CLAUDE_CLI_PATH", "/opt/claude/bin/claude")
    config = JudgeConfig.from_env()
    assert config.default_spec == BackendSpec.parse("litellm:openai/gpt-4o")
    assert config.default_source == "env"
    assert config.ttl_s == 0.25
    assert config.claude_cli_path == "/opt/claude/bin/claude"
    assert config.backend_file == tmp_path / ".judge_backend"  # conftest chdirs here


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_judge_name_means_default(value: str) -> None:
    config = JudgeConfig.from_env({"LLM_JUDGE_NAME": value})
    assert (str(config.default_spec), config.default_source) == ("ccode-4-sonnet", "default")


@pytest.mark.parametrize("value", ["garbage", "litellm:", "ccode-9-bogus", "litellm:a b"])
def test_bad_judge_name_names_the_variable_and_value(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        JudgeConfig.from_env({"LLM_JUDGE_NAME": value})
    assert str(info.value).startswith("LLM_JUDGE_NAME: ")
    assert repr(value) in str(info.value)
    assert (info.value.name, info.value.value) == ("LLM_JUDGE_NAME", value)


@pytest.mark.parametrize(("raw", "expected"), [
    ("sub/judge", "sub/judge"),
    ("./x/../judge", "judge"),
    ("  spaced  ", "spaced"),
])
def test_relative_backend_file_is_made_absolute_against_cwd(tmp_path: Path, raw: str,
                                                            expected: str) -> None:
    config = JudgeConfig.from_env({"LLM_JUDGE_BACKEND_FILE": raw}, cwd=tmp_path)
    assert config.backend_file.is_absolute()
    assert config.backend_file == tmp_path / expected


def test_absolute_and_home_backend_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert JudgeConfig.from_env({"LLM_JUDGE_BACKEND_FILE": "/srv/run/judge"},
                                cwd=tmp_path).backend_file == Path("/srv/run/judge")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = JudgeConfig.from_env({"LLM_JUDGE_BACKEND_FILE": "~/judge"}, cwd=Path("/"))
    assert config.backend_file == tmp_path / "home" / "judge"


NUMBERS = [
    # name, is_integer, a good value and what it becomes
    ("LLM_JUDGE_BACKEND_TTL", False, "0", 0.0),
    ("LLM_JUDGE_SCORE_MAX", False, "100", 100.0),
    ("LLM_JUDGE_MAX_INPUT_CHARS", True, "5000", 5000),
    ("LLM_JUDGE_MAX_TOKENS", True, "256", 256),
    ("LLM_JUDGE_TIMEOUT", False, "2.5", 2.5),
    ("LLM_JUDGE_DEADLINE", False, "30", 30.0),
    ("LLM_JUDGE_MAX_ATTEMPTS", True, "1", 1),
    ("LLM_JUDGE_BACKOFF", False, "0", 0.0),
    ("LLM_JUDGE_MAX_BACKOFF", False, "10", 10.0),
    ("LLM_JUDGE_NUM_WORKERS", True, "3", 3),
    ("LLM_JUDGE_MAX_IN_FLIGHT_CCODE", True, "7", 7),
    ("LLM_JUDGE_MAX_IN_FLIGHT_LITELLM", True, "64", 64),
    ("LLM_JUDGE_WORKER_CPUS", False, "0.5", 0.5),
    ("LLM_JUDGE_GC_THRESHOLD", True, "0", 0),
]
FIELDS = {
    "LLM_JUDGE_BACKEND_TTL": "ttl_s", "LLM_JUDGE_SCORE_MAX": "score_max",
    "LLM_JUDGE_MAX_INPUT_CHARS": "max_input_chars", "LLM_JUDGE_MAX_TOKENS": "max_tokens",
    "LLM_JUDGE_TIMEOUT": "timeout_s", "LLM_JUDGE_DEADLINE": "deadline_s",
    "LLM_JUDGE_MAX_ATTEMPTS": "max_attempts", "LLM_JUDGE_BACKOFF": "backoff_s",
    "LLM_JUDGE_MAX_BACKOFF": "max_backoff_s", "LLM_JUDGE_NUM_WORKERS": "num_workers",
    "LLM_JUDGE_MAX_IN_FLIGHT_CCODE": "max_in_flight_ccode",
    "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM": "max_in_flight_litellm",
    "LLM_JUDGE_WORKER_CPUS": "worker_cpus", "LLM_JUDGE_GC_THRESHOLD": "gc_threshold",
}


@pytest.mark.parametrize(("name", "integer", "good", "expected"), NUMBERS)
def test_good_numbers(name: str, integer: bool, good: str, expected: float) -> None:
    value = getattr(JudgeConfig.from_env({name: f" {good} "}), FIELDS[name])
    assert value == expected
    assert isinstance(value, int if integer else float)


@pytest.mark.parametrize(("name", "integer", "good", "expected"), NUMBERS)
@pytest.mark.parametrize("bad", ["abc", "-5", "nan", "inf", "1,5", "0x10"])
def test_every_bad_number_is_named_with_its_value(name: str, integer: bool, good: str,
                                                  expected: float, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        JudgeConfig.from_env({name: bad})
    assert name in str(info.value)
    assert repr(bad) in str(info.value)
    assert (info.value.name, info.value.value) == (name, bad)


@pytest.mark.parametrize("name", [n for n, integer, _, _ in NUMBERS if integer])
def test_integers_reject_fractions(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be an integer, got '1.5'"):
        JudgeConfig.from_env({name: "1.5"})


def test_config_is_frozen() -> None:
    config = JudgeConfig.from_env({})
    with pytest.raises(AttributeError):
        config.ttl_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "expected"), [
    (None, "lean"), ("", "lean"), ("lean", "lean"), ("litellm", "litellm"),
    (" LiteLLM ", "litellm"),
])
def test_litellm_transport(raw: str | None, expected: str) -> None:
    env = {} if raw is None else {"LLM_JUDGE_LITELLM_TRANSPORT": raw}
    assert JudgeConfig.from_env(env).litellm_transport == expected


def test_bad_litellm_transport_is_named_with_its_value() -> None:
    with pytest.raises(ConfigError, match=r"LLM_JUDGE_LITELLM_TRANSPORT.*'httpx'"):
        JudgeConfig.from_env({"LLM_JUDGE_LITELLM_TRANSPORT": "httpx"})
