"""The settings table: every LLM_JUDGE_* name in the code is in it, the docs page is made
from it, every JudgeConfig field is filled by one row, and each row parses."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from ray_judge import configuration_page, settings
from ray_judge.config import ENV_VARS, JudgeConfig
from ray_judge.errors import ConfigError
from ray_judge.settings import SETTINGS
from ray_judge.spec import BackendSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "configuration.md"
REGENERATE = "python -m ray_judge.configuration_page > docs/configuration.md"
NAMES = {s.env for s in SETTINGS}
# A name, not a prefix: `LLM_JUDGE_*` in prose and `LLM_JUDGE_` in a regex are not names.
_NAME = re.compile(r"\bLLM_JUDGE_[A-Z0-9_]*[A-Z0-9]\b")


def _sources() -> list[Path]:
    package = [p for p in (ROOT / "ray_judge").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    return [*package, ROOT / "launch.sh", ROOT / "switch_judge_backend.py"]


def test_every_name_read_or_mentioned_in_the_code_is_a_setting() -> None:
    unknown = sorted({f"{path.relative_to(ROOT)}: {name}"
                      for path in _sources()
                      for name in _NAME.findall(path.read_text(errors="replace"))
                      if name not in NAMES})
    assert not unknown, f"not in ray_judge/settings.py's SETTINGS: {unknown}"


def test_the_scan_sees_what_it_must() -> None:
    # launch.sh reads LLM_JUDGE_NAMESPACE itself; the collector only mentions its setting.
    found = {name for path in _sources() if path.name in ("launch.sh", "collector.py")
             for name in _NAME.findall(path.read_text())}
    assert {"LLM_JUDGE_NAMESPACE", "LLM_JUDGE_GC_THRESHOLD"} <= found


def test_the_docs_page_is_the_generated_one() -> None:
    assert DOCS.read_text() == configuration_page.markdown(), (
        f"docs/configuration.md is stale; regenerate it with: {REGENERATE}")


def test_every_setting_is_a_row_of_the_docs_page() -> None:
    page = DOCS.read_text()
    assert [s.env for s in SETTINGS if f"| `{s.env}` |" not in page] == []


def test_the_page_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert configuration_page.main([]) == 0
    assert capsys.readouterr().out == configuration_page.markdown()
    assert configuration_page.main(["--html"]) == 2
    assert REGENERATE in capsys.readouterr().err


def test_env_vars_is_the_table() -> None:
    assert list(ENV_VARS) == [s.env for s in SETTINGS]
    assert "LLM_JUDGE_GC_THRESHOLD" in ENV_VARS  # the one that had drifted out


def test_one_row_per_variable_and_per_field() -> None:
    fields = [s.field for s in SETTINGS]
    assert len(NAMES) == len(SETTINGS)
    assert len(set(fields)) == len(fields)
    derived = {"default_source"}  # "env" when LLM_JUDGE_NAME filled default_spec
    assert set(fields) == {f.name for f in dataclasses.fields(JudgeConfig)} - derived


def test_an_empty_environment_is_the_dataclass_defaults() -> None:
    assert JudgeConfig.from_env({}, cwd=Path.cwd()) == JudgeConfig()
    assert JudgeConfig.from_env(dict.fromkeys(NAMES, "  "), cwd=Path.cwd()) == JudgeConfig()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_the_documented_default_is_the_fields(setting: settings.Setting) -> None:
    value = getattr(JudgeConfig(), setting.field)
    word = setting.default.split()[0].strip("`")  # "`claude` on PATH", "`session`"
    number = setting.default.split(" (")[0]  # "0 (no limit)"
    if isinstance(value, (str, BackendSpec)):
        assert word == str(value)
    elif isinstance(value, (int, float)) and re.fullmatch(r"[0-9.]+", number):
        assert float(number) == value
    else:  # worked out at start (CPUs, a share) or unset: the words say how
        assert not re.match(r"[0-9]", number) or " x " in number, setting.default


# One good value per setting, and what the field becomes: a new row needs a line here.
GOOD: dict[str, tuple[str, Any]] = {
    "CLAUDE_CLI_PATH": (" /opt/claude ", "/opt/claude"),
    "LLM_JUDGE_NAME": ("litellm:openai/gpt-4o", BackendSpec.parse("litellm:openai/gpt-4o")),
    "LLM_JUDGE_BACKEND_FILE": ("run/../x", Path("/base/x")),
    "LLM_JUDGE_BACKEND_TTL": ("0.5", 0.5),
    "LLM_JUDGE_CCODE_MODEL": ("claude-x", {"*": "claude-x"}),
    "LLM_JUDGE_RUBRIC_FILE": ("rubric.txt", Path("/base/rubric.txt")),
    "LLM_JUDGE_JUDGES_FILE": ("/etc/judges.toml", Path("/etc/judges.toml")),
    "LLM_JUDGE_SCORE_MAX": ("5", 5.0),
    "LLM_JUDGE_MAX_INPUT_CHARS": ("100", 100),
    "LLM_JUDGE_MAX_TOKENS": ("16", 16),
    "LLM_JUDGE_TIMEOUT": ("0.1", 0.1),
    "LLM_JUDGE_DEADLINE": ("30", 30.0),
    "LLM_JUDGE_MAX_ATTEMPTS": ("1", 1),
    "LLM_JUDGE_BACKOFF": ("0", 0.0),
    "LLM_JUDGE_MAX_BACKOFF": ("2", 2.0),
    "LLM_JUDGE_NUM_WORKERS": ("3", 3),
    "LLM_JUDGE_MAX_IN_FLIGHT_CCODE": ("4", 4),
    "LLM_JUDGE_CCODE_MODE": ("OneShot", "oneshot"),
    "LLM_JUDGE_CCODE_SESSIONS": ("0", 0),
    "LLM_JUDGE_CCODE_SESSION_ITEMS": ("1", 1),
    "LLM_JUDGE_CCODE_SESSION_IDLE": ("0", 0.0),
    "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM": ("8", 8),
    "LLM_JUDGE_LITELLM_TRANSPORT": ("litellm", "litellm"),
    "LLM_JUDGE_PROMPT_CACHE": ("OFF", False),
    "LLM_JUDGE_WORKER_CPUS": ("0.25", 0.25),
    "LLM_JUDGE_GC_THRESHOLD": ("700", 700),
    "LLM_JUDGE_FALLBACK": ("ccode-4-opus,, litellm:openai/m",
                           (BackendSpec.parse("ccode-4-opus"),
                            BackendSpec.parse("litellm:openai/m"))),
    "LLM_JUDGE_BUDGET_USD": (" 20/H , 500 ", settings.SpendLimits(run=500.0, hourly=20.0)),
    "LLM_JUDGE_BUDGET_POLICY": ("Wait", "wait"),
    "LLM_JUDGE_FAILOVER_RATE_LIMITED": ("0", 0),
    "LLM_JUDGE_PROBE_INTERVAL": ("0.1", 0.1),
    "LLM_JUDGE_HEDGE": ("Off", False),
    "LLM_JUDGE_HEDGE_AFTER": ("2.5", 2.5),
    "LLM_JUDGE_HEDGE_MIN_DELAY": ("0", 0.0),
    "LLM_JUDGE_HEDGE_SHARE": ("0.2", 0.2),
    "LLM_JUDGE_HEDGE_TO": ("litellm:openai/fast", BackendSpec.parse("litellm:openai/fast")),
    "LLM_JUDGE_RPM_CCODE": ("60", 60.0),
    "LLM_JUDGE_RPM_LITELLM": ("600", 600.0),
    "LLM_JUDGE_TPM_CCODE": ("1e6", 1e6),
    "LLM_JUDGE_TPM_LITELLM": ("0", 0.0),
    "LLM_JUDGE_CACHE_SIZE": ("0", 0),
    "LLM_JUDGE_CACHE_PATH": ("~/cache.db", Path("~/cache.db").expanduser()),
    "LLM_JUDGE_RESERVOIR_SIZE": ("0", 0),
    "LLM_JUDGE_PANEL_WINDOW": ("50", 50),
    "LLM_JUDGE_SHIFT_SHARE": ("1", 1.0),
    "LLM_JUDGE_SHIFT_WARN": ("0", 0.0),
    "LLM_JUDGE_CALIBRATE": ("Quantile", "quantile"),
    "LLM_JUDGE_CALIBRATION_MIN_PAIRS": ("1", 1),
    "LLM_JUDGE_CALIBRATION_REFERENCE": ("ccode-4-opus", BackendSpec.parse("ccode-4-opus")),
    "LLM_JUDGE_VALIDATION_FILE": ("cases.jsonl", Path("/base/cases.jsonl")),
    "LLM_JUDGE_VALIDATION_GATE": (" spearman>=0.6 , in_range=0.8", "spearman>=0.6,in_range=0.8"),
    "LLM_JUDGE_CANARY_SHARE": ("0", 0.0),
    "LLM_JUDGE_CANARY_PASS": ("0.4", 0.4),
    "LLM_JUDGE_CANARY_WARN": ("1", 1.0),
    "LLM_JUDGE_LENGTH_BIAS_WINDOW": ("0", 0),
    "LLM_JUDGE_LENGTH_BIAS_WARN": ("-0.5", -0.5),
    "LLM_JUDGE_LENGTH_BIAS_MIN": ("2", 2),
    "LLM_JUDGE_ACTOR_NAME": ("judge2", "judge2"),
    "LLM_JUDGE_NAMESPACE": ("ns", "ns"),
}


def test_every_setting_has_a_good_value_below() -> None:
    assert set(GOOD) == NAMES


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_a_good_value_fills_its_field(setting: settings.Setting) -> None:
    raw, expected = GOOD[setting.env]
    config = JudgeConfig.from_env({setting.env: raw}, cwd=Path("/base"))
    assert getattr(config, setting.field) == expected


BAD = [
    ("LLM_JUDGE_PROMPT_CACHE", "no", "must be on or off"),
    # name, value, words of the message (the bad value or the bad part of it)
    ("LLM_JUDGE_SHIFT_SHARE", "0", "must be within (0, 1], got '0'"),
    ("LLM_JUDGE_SHIFT_SHARE", "1.5", "must be within (0, 1], got '1.5'"),
    ("LLM_JUDGE_SHIFT_WARN", "-0.1", "must be >= 0.0 and finite, got '-0.1'"),
    ("LLM_JUDGE_CALIBRATE", "linear", "must be one of none, quantile, got 'linear'"),
    ("LLM_JUDGE_CCODE_MODE", "forever", "must be one of session, oneshot, got 'forever'"),
    ("LLM_JUDGE_MAX_TOKENS", "15", "must be >= 16 and finite, got '15'"),
    ("LLM_JUDGE_CALIBRATION_MIN_PAIRS", "0", "must be >= 1 and finite, got '0'"),
    ("LLM_JUDGE_CACHE_SIZE", "1e3", "must be an integer, got '1e3'"),
    ("LLM_JUDGE_FALLBACK", "ccode-4-opus,nonsense", ": invalid judge backend 'nonsense'"),
    ("LLM_JUDGE_BUDGET_USD", "20/d", "must be US dollars for the run and/or per hour, "
     "such as 500, 20/h or 20/h,500, got '20/d'"),
    ("LLM_JUDGE_BUDGET_USD", "0/h", "must hold limits > 0, such as 500, 20/h or 20/h,500, "
     "got '0/h'"),
    ("LLM_JUDGE_BUDGET_USD", "5,6", "must give the run limit once, got '5,6'"),
    ("LLM_JUDGE_BUDGET_POLICY", "spend", "must be one of fallback, wait, fail, got 'spend'"),
    ("LLM_JUDGE_CALIBRATION_REFERENCE", "litellm:", ": invalid judge backend 'litellm:'"),
    ("LLM_JUDGE_CCODE_MODEL", "ccode-9=x", ": unknown alias 'ccode-9' in 'ccode-9=x'"),
    ("LLM_JUDGE_HEDGE", "sometimes", "must be on or off, got 'sometimes'"),
    ("LLM_JUDGE_HEDGE_AFTER", "-1", "must be >= 0.0 and finite, got '-1'"),
    ("LLM_JUDGE_HEDGE_SHARE", "0", "must be within (0, 1], got '0'"),
    ("LLM_JUDGE_HEDGE_TO", "litellm:", ": invalid judge backend 'litellm:'"),
    ("LLM_JUDGE_VALIDATION_GATE", "spearman high", "must be bounds such as spearman>=0.6,"
     "in_range>=0.8, got 'spearman high'"),
    ("LLM_JUDGE_CANARY_SHARE", "1.5", "must be within [0, 1], got '1.5'"),
    ("LLM_JUDGE_CANARY_SHARE", "-0.1", "must be >= 0.0 and finite, got '-0.1'"),
    ("LLM_JUDGE_LENGTH_BIAS_MIN", "1", "must be >= 2 and finite, got '1'"),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD)
def test_a_bad_value_is_named_and_shown(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        JudgeConfig.from_env({name: value})
    message = str(info.value)
    assert message.startswith(name + (" " if words.startswith("must") else "") + words)
    assert (info.value.name, info.value.value) == (name, value)
    assert message.count(name) == 1


def test_the_table_imports_only_core_values() -> None:
    tree = ast.parse(Path(settings.__file__).read_text())
    inside = {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert inside <= {"errors", "spec"}
