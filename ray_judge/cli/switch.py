"""The switch commands, ``switch_judge_backend.py`` / ``switch-judge-backend``.

``litellm``, ``ccode`` and ``remove`` write or delete the override file and notify a
running judge; ``show`` says which backend is in effect, where it comes from, and what a
running judge reports. Nothing here imports ray or litellm at import time: switching must
answer in a blink, also on a login node where importing ray takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

import typer

from ..config import JudgeConfig
from ..errors import JudgeError
from ..selection.resolver import (
    BackendResolver,
    Resolution,
    permission_warnings,
    remove_override,
    write_override,
)
from ..spec import CCODE_MODELS, DEFAULT_SPEC, LITELLM_PREFIX, BackendSpec
from .common import fail, load_config, running_judge, user_errors
from .pool import watch_judge
from .status_text import format_live_status

__all__ = ["Notifier", "notify_running_judge", "switch_app"]

#: ``notify(config, spec)`` after the override file was written (``spec``) or removed
#: (``None``); returns a line to print, or ``None`` to print nothing.
Notifier = Callable[[JudgeConfig, BackendSpec | None], str | None]


def notify_running_judge(config: JudgeConfig, spec: BackendSpec | None) -> str | None:
    """Tell a running judge that the override file changed, so it switches now.

    Called after every write and after every remove that deleted a file. A judge re-reads
    the file within ``config.ttl_s`` anyway; notifying only makes the switch immediate,
    so a failure here never fails the command. Ray is imported only when a cluster looks
    reachable (``RAY_ADDRESS`` or a local ``ray start``), and the wait is bounded.

    Returns:
        A line for the user, or ``None`` to print nothing.
    """
    from ..pool.cluster import JudgeUnreachable, cluster_address, refresh_running_judge

    if cluster_address() is None:
        return "No Ray cluster found here (RAY_ADDRESS unset), so no running judge to notify."
    try:
        now = refresh_running_judge(config)
    except JudgeUnreachable as exc:
        return f"Could not notify a running judge: {exc}."
    return f"Running judge notified: it now serves {now['backend']} (source: {now['source']})."


def _litellm_spec(model: str) -> BackendSpec:
    text = model.strip()
    if text.startswith(LITELLM_PREFIX):  # a whole spec pasted from a file or the README
        text = text[len(LITELLM_PREFIX):]
    if text in CCODE_MODELS:
        fail(f"{model!r} is a Claude Code alias, not a LiteLLM model; use: ccode {text}")
    with user_errors():
        return BackendSpec.litellm(text)


def _ccode_spec(alias: str) -> BackendSpec:
    name = alias.strip()
    for candidate in (name, f"ccode-{name}"):  # ``4-opus`` is short for ``ccode-4-opus``
        if candidate in CCODE_MODELS:
            return BackendSpec.ccode(candidate)
    fail(f"unknown Claude Code alias {alias!r}; known: {', '.join(sorted(CCODE_MODELS))}")


def _sends(config: JudgeConfig, spec: BackendSpec) -> str:
    model = spec.model(config.ccode_models)
    if spec.kind == "ccode":
        return f"{model} to the Claude Code CLI ({config.claude_cli_path} --model)"
    return f"{model} to LiteLLM"


def _report_effective(config: JudgeConfig) -> None:
    resolution = BackendResolver(config).resolve()
    typer.echo(f"Effective judge backend: {resolution.spec} ({resolution.where})")
    if resolution.problem:
        typer.echo(f"Problem: {resolution.problem}")


def _notify(config: JudgeConfig, spec: BackendSpec | None) -> None:
    typer.echo(f"A running judge that reads this file follows within {config.ttl_s:g} s.")
    try:
        message = notify_running_judge(config, spec)
    except Exception as exc:  # the file is already right; a failed nudge is only a delay
        message = f"note: could not notify a running judge ({exc}); it follows within the TTL"
    if message:
        typer.echo(message)


def _show_text(config: JudgeConfig, resolution: Resolution, warnings: list[str]) -> str:
    lines = [
        f"Judge backend: {resolution.spec}",
        f"  source:  {resolution.where}",
        f"  sends:   {_sends(config, resolution.spec)}",
    ]
    if resolution.source != "file":
        state = "present but ignored" if resolution.path.exists() else "not present"
        lines.append(f"  file:    {resolution.path} ({state})")
    if resolution.problem:
        lines.append(f"  problem: {resolution.problem}")
        lines.append("           (ignored; a running judge keeps its last good backend)")
    lines += [f"  warning: {w}; whoever can write it can change the reward" for w in warnings]
    return "\n".join(lines)


def _show_json(config: JudgeConfig, resolution: Resolution, warnings: list[str]) -> str:
    return json.dumps({
        "backend": str(resolution.spec),
        "kind": resolution.spec.kind,
        "model": resolution.spec.model(config.ccode_models),
        "source": resolution.source,
        "source_description": resolution.where,
        "file": str(resolution.path),
        "file_exists": resolution.path.exists(),
        "problem": resolution.problem,
        "warnings": warnings,
        "ttl_s": config.ttl_s,
    })


# ------------------------------------------------------------------- switch commands

switch_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Switch the LLM judge's backend while it runs, through the override file "
    "(.judge_backend in the current directory, or $LLM_JUDGE_BACKEND_FILE).",
)


@switch_app.command("litellm")
def switch_litellm(
    model: Annotated[str, typer.Argument(
        help="LiteLLM model string, e.g. anthropic/claude-3-opus-20240229", show_default=False,
    )],
) -> None:
    """Use LiteLLM with MODEL (writes litellm:MODEL to the override file)."""
    config = load_config()
    _write(config, _litellm_spec(model))


@switch_app.command("ccode")
def switch_ccode(
    alias: Annotated[str, typer.Argument(
        help=f"Claude Code alias: {', '.join(sorted(CCODE_MODELS))} ('ccode-' may be left out)",
    )] = DEFAULT_SPEC,
) -> None:
    """Use the Claude Code CLI (writes the alias, ccode-4-sonnet by default)."""
    config = load_config()
    _write(config, _ccode_spec(alias))


def _write(config: JudgeConfig, spec: BackendSpec) -> None:
    with user_errors():
        path = write_override(config.backend_file, spec)
    typer.echo(f"Wrote {spec} to {path}")
    _report_effective(config)
    _notify(config, spec)


@switch_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
    live: Annotated[bool, typer.Option(
        "--live/--no-live", help="Also ask a running judge for its load, counts and cost.",
    )] = True,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Keep showing the running judge, redrawn every second (ray-judge "
        "watch).",
    )] = False,
) -> None:
    """Show the effective backend, where it comes from, and any problem with the file."""
    if watch:
        watch_judge()
        return
    config = load_config()
    resolution = BackendResolver(config).resolve()
    warnings = permission_warnings(resolution.path)
    judge, judge_error = running_judge(config) if live else (None, "not asked (--no-live)")
    if as_json:
        out = json.loads(_show_json(config, resolution, warnings))
        out["judge"], out["judge_error"] = judge, judge_error
        typer.echo(json.dumps(out))
        return
    typer.echo(_show_text(config, resolution, warnings))
    # The file's warnings are printed above already (the same file, seen from here).
    typer.echo(format_live_status(judge, warnings=False) if judge
               else f"Running judge: {judge_error}")
    if not judge and config.judges_file is not None:
        typer.echo(_judges_file_text(config))


def _judges_file_text(config: JudgeConfig) -> str:
    """The judges a judge started here would know (LLM_JUDGE_JUDGES_FILE), or its problem."""
    from ..judging.catalog import JudgeCatalog

    try:
        versions = JudgeCatalog.build(config).versions()
    except JudgeError as exc:
        return f"Judges file: {exc}"
    names = ", ".join(f"{name} ({version})" for name, version in versions.items())
    return f"Judges file: {config.judges_file}: {names}"


@switch_app.command("remove")
def remove() -> None:
    """Delete the override file, reverting to LLM_JUDGE_NAME or the default."""
    config = load_config()
    with user_errors():
        removed = remove_override(config.backend_file)
    if not removed:
        typer.echo(f"No override file at {config.backend_file}; nothing to remove.")
        _report_effective(config)
        return
    typer.echo(f"Removed override file {config.backend_file}")
    _report_effective(config)
    _notify(config, None)

