"""The switch CLI, in process through CliRunner and as the seed's real commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ray_judge.cli import app, switch_app
from ray_judge.cli import switch as cli  # notify_running_judge is looked up there
from ray_judge.spec import BackendSpec

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "switch_judge_backend.py"
CLAUDE3 = "anthropic/claude-3-opus-20240229"
GPT_FILE = "litellm:openai/gpt-4o\n"

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None, target=switch_app):
    return runner.invoke(target, list(args), env=env)


@pytest.fixture
def backend_file(tmp_path: Path) -> Path:
    return tmp_path / ".judge_backend"


# ----------------------------------------------------------------- writing commands


def test_litellm_writes_the_spec_and_confirms(backend_file) -> None:
    result = invoke("litellm", CLAUDE3)
    assert result.exit_code == 0, result.output
    assert backend_file.read_text() == f"litellm:{CLAUDE3}\n"
    assert result.stdout.splitlines() == [
        f"Wrote litellm:{CLAUDE3} to {backend_file}",
        f"Effective judge backend: litellm:{CLAUDE3} (override file {backend_file})",
        "A running judge that reads this file follows within 5 s.",
        "No Ray cluster found here (RAY_ADDRESS unset), so no running judge to notify.",
    ]
    assert result.stderr == ""


def test_litellm_accepts_a_pasted_spec(backend_file) -> None:
    assert invoke("litellm", "litellm:openai/gpt-4o").exit_code == 0
    assert backend_file.read_text() == GPT_FILE


@pytest.mark.parametrize(("args", "written"), [
    ((), "ccode-4-sonnet"),
    (("ccode-4-opus",), "ccode-4-opus"),
    (("4-opus",), "ccode-4-opus"),
    (("4.5-sonnet",), "ccode-4.5-sonnet"),
    ((" ccode-4-haiku ",), "ccode-4-haiku"),
])
def test_ccode_writes_the_canonical_alias(backend_file, args, written) -> None:
    result = invoke("ccode", *args)
    assert result.exit_code == 0, result.output
    assert backend_file.read_text() == f"{written}\n"
    assert f"Wrote {written} to {backend_file}" in result.stdout


def test_remove_twice(backend_file) -> None:
    backend_file.write_text(GPT_FILE)
    first = invoke("remove", env={"LLM_JUDGE_NAME": "ccode-4-opus"})
    assert first.exit_code == 0
    assert first.stdout.splitlines()[:2] == [
        f"Removed override file {backend_file}",
        "Effective judge backend: ccode-4-opus (environment variable LLM_JUDGE_NAME)",
    ]
    assert not backend_file.exists()
    second = invoke("remove")
    assert second.exit_code == 0
    assert second.stdout.splitlines() == [
        f"No override file at {backend_file}; nothing to remove.",
        "Effective judge backend: ccode-4-sonnet (built-in default)",
    ]


def test_backend_file_from_env(tmp_path) -> None:
    result = invoke("ccode", env={"LLM_JUDGE_BACKEND_FILE": "run/judge"})
    assert result.exit_code == 1  # the directory does not exist yet
    (tmp_path / "run").mkdir()
    assert invoke("ccode", env={"LLM_JUDGE_BACKEND_FILE": "run/judge"}).exit_code == 0
    assert (tmp_path / "run" / "judge").read_text() == "ccode-4-sonnet\n"


# ------------------------------------------------------------------------------- show


def test_show_default(backend_file) -> None:
    result = invoke("show")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "Judge backend: ccode-4-sonnet",
        "  source:  built-in default",
        "  sends:   claude-sonnet-4-20250514 to the Claude Code CLI (claude --model)",
        f"  file:    {backend_file} (not present)",
        "Running judge: no Ray cluster found here (RAY_ADDRESS unset)",
    ]


def test_show_env_with_overridden_model_and_cli_path() -> None:
    env = {"LLM_JUDGE_NAME": "ccode-4-opus", "LLM_JUDGE_CCODE_MODEL": "claude-opus-4-1",
           "CLAUDE_CLI_PATH": "/usr/local/bin/claude"}
    lines = invoke("show", env=env).stdout.splitlines()
    assert lines[1] == "  source:  environment variable LLM_JUDGE_NAME"
    assert lines[2] == ("  sends:   claude-opus-4-1 to the Claude Code CLI "
                        "(/usr/local/bin/claude --model)")


def test_show_file(backend_file) -> None:
    backend_file.write_text(GPT_FILE)
    assert invoke("show").stdout.splitlines() == [
        "Judge backend: litellm:openai/gpt-4o",
        f"  source:  override file {backend_file}",
        "  sends:   openai/gpt-4o to LiteLLM",
        "Running judge: no Ray cluster found here (RAY_ADDRESS unset)",
    ]


def test_show_reports_a_bad_file(backend_file) -> None:
    backend_file.write_text("litellm:half writ")
    result = invoke("show", env={"LLM_JUDGE_NAME": "litellm:openai/gpt-4o"})
    assert result.exit_code == 0
    assert result.stderr == ""  # the resolver's warning is not printed twice
    lines = result.stdout.splitlines()
    assert lines[0] == "Judge backend: litellm:openai/gpt-4o"
    assert lines[3] == f"  file:    {backend_file} (present but ignored)"
    assert lines[4].startswith(f"  problem: override file {backend_file}: invalid judge backend "
                               "'litellm:half writ': it contains whitespace")


def test_show_warns_when_others_can_change_the_reward(tmp_path) -> None:
    tmp_path.chmod(0o777)
    try:
        result = invoke("show")
    finally:
        tmp_path.chmod(0o755)
    assert (f"  warning: directory {tmp_path} is writable by every user (mode 0777); "
            "whoever can write it can change the reward") in result.stdout.splitlines()


def test_show_json(backend_file) -> None:
    backend_file.write_text(GPT_FILE)
    result = invoke("show", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "backend": "litellm:openai/gpt-4o",
        "kind": "litellm",
        "model": "openai/gpt-4o",
        "source": "file",
        "source_description": f"override file {backend_file}",
        "file": str(backend_file),
        "file_exists": True,
        "problem": None,
        "warnings": [],
        "ttl_s": 5.0,
        "judge": None,
        "judge_error": "no Ray cluster found here (RAY_ADDRESS unset)",
    }
    assert result.stdout.count("\n") == 1


def test_show_json_with_a_problem(backend_file) -> None:
    backend_file.write_bytes(b"\xff\xfe")
    data = json.loads(invoke("show", "--json").stdout)
    assert (data["backend"], data["source"], data["file_exists"]) == (
        "ccode-4-sonnet", "default", True)
    assert "not UTF-8" in data["problem"]


# -------------------------------------------------------------------------- bad input

BAD = [
    # args, env, exit code, text the error must show
    (["litellm"], {}, 2, "Missing argument"),
    (["litellm", "bad model"], {}, 1, "'litellm:bad model'"),
    (["litellm", ""], {}, 1, "the LiteLLM model is empty"),
    (["litellm", "gpt\x1b[2J"], {}, 1, "control character '\\x1b'"),
    (["litellm", "m" * 300], {}, 1, "longer than 256 characters"),
    (["litellm", "ccode-4-opus"], {}, 1, "'ccode-4-opus' is a Claude Code alias"),
    (["ccode", "ccode-9-bogus"], {}, 1, "unknown Claude Code alias 'ccode-9-bogus'"),
    (["ccode", "litellm:openai/gpt-4o"], {}, 1, "unknown Claude Code alias 'litellm:"),
    (["ccode", "a", "b"], {}, 2, "unexpected extra argument"),
    (["nope"], {}, 2, "No such command"),
    (["show"], {"LLM_JUDGE_NAME": "garbage"}, 1, "LLM_JUDGE_NAME: invalid judge backend 'garbage'"),
    (["ccode"], {"LLM_JUDGE_NAME": "garbage"}, 1, "'garbage'"),
    (["remove"], {"LLM_JUDGE_BACKEND_TTL": "soon"}, 1,
     "LLM_JUDGE_BACKEND_TTL must be a number, got 'soon'"),
    (["litellm", "openai/gpt-4o"], {"LLM_JUDGE_BACKEND_FILE": "missing/x"}, 1,
     "/missing/x: No such file or directory"),
    (["ccode"], {"LLM_JUDGE_BACKEND_FILE": ".judge_backend/x"}, 1, "/x: Not a directory"),
    (["ccode"], {"LLM_JUDGE_BACKEND_FILE": "adir"}, 1, "/adir: Is a directory"),
    (["remove"], {"LLM_JUDGE_BACKEND_FILE": "adir"}, 1, "cannot remove override file"),
]


@pytest.mark.parametrize(("args", "env", "code", "shown"), BAD)
def test_bad_input_one_line_and_the_file_untouched(tmp_path, backend_file, args, env, code,
                                                   shown) -> None:
    backend_file.write_text(GPT_FILE)
    (tmp_path / "adir").mkdir()
    before = backend_file.stat()
    result = invoke(*args, env=env)
    assert result.exit_code == code, result.output
    assert shown in result.stderr
    if code == 1:
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1
        assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert backend_file.read_text() == GPT_FILE
    assert backend_file.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(os.listdir(tmp_path)) == [".judge_backend", "adir"]


# ---------------------------------------------------------------------- notify hook


def test_notify_hook_is_called_after_write_and_remove(monkeypatch, backend_file) -> None:
    calls: list[BackendSpec | None] = []

    def notify(config, spec):
        assert config.backend_file == backend_file
        calls.append(spec)
        return "notified the judge"

    monkeypatch.setattr(cli, "notify_running_judge", notify)
    assert invoke("litellm", CLAUDE3).stdout.splitlines()[-1] == "notified the judge"
    invoke("ccode")
    invoke("remove")
    invoke("remove")  # nothing removed: nothing to tell
    invoke("show")
    assert calls == [BackendSpec.litellm(CLAUDE3), BackendSpec.ccode(), None]


def test_a_failing_notify_does_not_fail_the_switch(monkeypatch, backend_file) -> None:
    def notify(config, spec):
        raise ConnectionError("no cluster at 127.0.0.1:6379")

    monkeypatch.setattr(cli, "notify_running_judge", notify)
    result = invoke("litellm", CLAUDE3)
    assert result.exit_code == 0
    assert "could not notify a running judge (no cluster at 127.0.0.1:6379)" in result.stdout
    assert backend_file.read_text() == f"litellm:{CLAUDE3}\n"


def test_notify_without_a_cluster_says_so_without_importing_ray() -> None:
    message = cli.notify_running_judge(None, None)  # type: ignore[arg-type]
    assert message == ("No Ray cluster found here (RAY_ADDRESS unset), "
                       "so no running judge to notify.")


# ------------------------------------------------------------------------ ray-judge


def test_ray_judge_mounts_the_switch_commands(backend_file) -> None:
    assert invoke("switch", "litellm", CLAUDE3, target=app).exit_code == 0
    shown = json.loads(invoke("show", "--json", target=app).stdout)
    assert shown["backend"] == f"litellm:{CLAUDE3}"
    assert "Judge backend: " in invoke("switch", "show", target=app).stdout
    assert invoke("switch", "remove", target=app).exit_code == 0
    assert not backend_file.exists()
    help_text = invoke("--help", target=app).stdout
    assert "switch" in help_text and "show" in help_text


# ------------------------------------------------------------- real subprocesses


def run(*args: str, cwd: Path, env: dict[str, str] | None = None,
        argv0: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(argv0 or [sys.executable, str(SCRIPT)]), *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60,
        check=False,
    )


def test_the_seed_workflow_as_written(tmp_path, backend_file) -> None:
    env = {"CLAUDE_CLI_PATH": "/usr/local/bin/claude", "LLM_JUDGE_NAME": "ccode-4-sonnet"}

    def ok(*args: str) -> str:
        done = run(*args, cwd=tmp_path, env=env)
        assert (done.returncode, done.stderr) == (0, ""), done
        return done.stdout

    assert "environment variable LLM_JUDGE_NAME" in ok("show")
    assert f"Wrote litellm:{CLAUDE3} to {backend_file}" in ok("litellm", CLAUDE3)
    assert backend_file.read_text() == f"litellm:{CLAUDE3}\n"
    assert f"source:  override file {backend_file}" in ok("show")
    assert json.loads(ok("show", "--json"))["source"] == "file"
    assert f"Wrote ccode-4-sonnet to {backend_file}" in ok("ccode")
    assert backend_file.read_text() == "ccode-4-sonnet\n"
    assert f"Removed override file {backend_file}" in ok("remove")
    assert "nothing to remove" in ok("remove")
    assert json.loads(ok("show", "--json"))["source"] == "env"


def test_bad_input_as_a_real_process(tmp_path, backend_file) -> None:
    backend_file.write_text(GPT_FILE)
    done = run("litellm", "bad model", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "'litellm:bad model'" in done.stderr
    assert "Traceback" not in done.stderr
    assert backend_file.read_text() == GPT_FILE


def test_runs_from_the_repository_directory(tmp_path) -> None:
    done = run("show", "--json", cwd=REPO,
               env={"LLM_JUDGE_BACKEND_FILE": str(tmp_path / "x")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["file"] == str(tmp_path / "x")


def test_show_imports_neither_ray_nor_litellm(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), "show"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = re.findall(r"^import time:.*\|\s*(\S+)$", done.stderr, flags=re.MULTILINE)
    assert "ray_judge.cli" in imported
    heavy = [m for m in imported if m.split(".")[0] in {"ray", "litellm", "openai", "torch"}]
    assert heavy == []


@pytest.mark.parametrize(("script", "args"), [
    ("switch-judge-backend", ["show", "--json"]),
    ("ray-judge", ["show", "--json"]),
])
def test_console_scripts(tmp_path, script, args) -> None:
    path = shutil.which(script, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{script} is not installed (pip install -e .)")
    done = run(*args, cwd=tmp_path, argv0=[path])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"] == "ccode-4-sonnet"


def test_docs_list_every_environment_variable() -> None:
    from pathlib import Path

    from ray_judge.config import ENV_VARS

    # The configuration table moved from the README to docs/ (issue 21).
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = "\n".join(page.read_text() for page in sorted(docs.glob("*.md")))
    missing = [name for name in ENV_VARS if f"| `{name}` |" not in text]
    assert not missing, f"the configuration table in docs/ lacks {missing}"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text().splitlines()
    command = next(line for line in readme if line.rstrip().endswith("&& pytest"))
    assert command in (root / ".ci" / "run").read_text().splitlines()


def test_show_names_the_judges_of_the_judges_file(backend_file, tmp_path) -> None:
    from ray_judge.judging.catalog import JudgeCatalog

    judges = Path(__file__).resolve().parents[2] / "examples" / "judges" / "judges.toml"
    result = invoke("show", env={"LLM_JUDGE_JUDGES_FILE": str(judges)})
    assert result.exit_code == 0, result.output
    versions = JudgeCatalog.build(cli.JudgeConfig(judges_file=judges)).versions()
    assert result.stdout.splitlines()[-1] == (
        f"Judges file: {judges}: "
        + ", ".join(f"{name} ({version})" for name, version in versions.items()))
    bad = tmp_path / "bad.toml"
    bad.write_text("[judges.x]\nparser = 'nope'\nsystem = 's'\n")
    result = invoke("show", env={"LLM_JUDGE_JUDGES_FILE": str(bad)})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith(f"Judges file: {bad}: judge 'x': parser")
