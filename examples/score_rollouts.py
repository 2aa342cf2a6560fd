"""Score a set of RL rollouts with the judge, as a trainer does at every step.

Reads rollouts (one JSON object per line: ``id``, ``task``, ``prompt``, ``response``,
``reference``), sends them to the judge in batches through ``ray_judge.JudgeClient``
(several batches in flight at once; it resubmits them if the judge actor restarts), and
prints a summary: mean score, counts by status and by backend, latency percentiles, cost
and throughput.

    python examples/score_rollouts.py                       # the 300 bundled rollouts
    python examples/score_rollouts.py --dry-run             # the built-in fake model
    python examples/score_rollouts.py --dry-run --limit 40  # ... on the first 40
    python examples/score_rollouts.py --json verdicts.json  # also write every Verdict
    ./launch.sh python examples/score_rollouts.py           # on the cluster launch.sh runs

Ray: joins the cluster in ``RAY_ADDRESS`` (launch.sh sets it) or the one ``ray start``
left on this machine; otherwise starts a local one on 127.0.0.1 that ends with the script.

Judge: ``ray_judge.start_judge()`` gets the running judge or starts one, serving the
backend of the override file (``python switch_judge_backend.py ...``), else of
``LLM_JUDGE_NAME``, else ``ccode-4-sonnet``. Before starting anything the script checks
that this backend can run here (the ``claude`` CLI, or the provider's key for a LiteLLM
model) and otherwise exits with code 2 saying what to set.

``--dry-run`` starts a separate judge, ``judge-dry-run``, whose backends are all
ray_judge's FakeBackend: the same pool, prompts and parsing, deterministic pseudo-scores,
no model. It is stopped at the end unless ``--keep-judge``.

A failed verdict (timeout, rate limit, parse error, ...) has no score and is never
counted as 0.0: the mean is over ok verdicts only, failures are counted by status with
the first error of each. Exit code: 0 when the set was scored (even with some failures),
1 when every verdict failed, 2 when the script could not start.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import textwrap
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

import ray_judge
from ray_judge.config import JudgeConfig
from ray_judge.errors import ConfigError
from ray_judge.pool.cluster import cluster_address
from ray_judge.pool.stats import percentile
from ray_judge.selection.resolver import BackendResolver

BUNDLED = Path(__file__).with_name("rollouts.jsonl")
DRY_RUN_JUDGE = "judge-dry-run"
FAKE_BACKEND = "ray_judge.backends.fake:FakeBackend"

#: Where LiteLLM finds credentials for a provider; any one of them will do. Providers not
#: listed are not checked (a local server may need nothing): the judge will say.
PROVIDER_ENV = {
    "openai": ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "hosted_vllm": ("HOSTED_VLLM_API_BASE",),
    "gemini": ("GEMINI_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}

#: What to do when the first batch comes back with nothing but this status.
HINTS = {
    "auth_error": "the backend refused the credentials: check the API key, or run "
                  "`claude login` (or set CLAUDE_CODE_OAUTH_TOKEN) for the Claude Code CLI.",
    "usage_limited": "the subscription's usage limit is reached: switch backend with "
                     "`python switch_judge_backend.py litellm MODEL` and run again.",
    "rate_limited": "the provider keeps answering 429: lower LLM_JUDGE_MAX_IN_FLIGHT_* or "
                    "switch backend with `python switch_judge_backend.py litellm MODEL`.",
    "parse_error": "the judge model does not end its answers with `SCORE: N`: try a "
                   "stronger model or check LLM_JUDGE_RUBRIC_FILE.",
}
DEFAULT_HINT = ("see `python switch_judge_backend.py show` for the backend in force, fix its "
                "settings or switch with `python switch_judge_backend.py litellm MODEL`, or "
                "try the pipeline with --dry-run.")

#: Printed after a dry run: the one change that makes it a real judged run.
REAL_RUN_HINT = (
    "This was a dry run with the built-in fake model. For a run judged by a real model, "
    "drop --dry-run and give the judge one: export CLAUDE_CLI_PATH=$(which claude) (the "
    "Claude Code CLI, logged in), or set a provider key and switch, e.g. export "
    "ANTHROPIC_API_KEY=... && python switch_judge_backend.py litellm "
    "anthropic/claude-sonnet-4-20250514.")

app = typer.Typer(add_completion=False)


def fail(code: int, message: str) -> NoReturn:
    print(textwrap.fill(message, width=88, break_long_words=False, break_on_hyphens=False),
          file=sys.stderr)
    raise typer.Exit(code)


# -- before anything starts ---------------------------------------------------------------


def load_rollouts(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """The rollouts of ``path``, checked here so that a typo fails before Ray starts."""
    rollouts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(2, f"cannot read {path}: {exc}")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(2, f"{path} line {number} is not JSON: {exc}")
        if not isinstance(row, dict):
            fail(2, f"{path} line {number} must be a JSON object, got {type(row).__name__}")
        for field in ("prompt", "response", "reference"):
            value = row.get(field)
            if not isinstance(value, str) and not (field == "reference" and value is None):
                fail(2, f"{path} line {number}: {field!r} must be a string, got "
                        f"{type(value).__name__}")
        rollouts.append({"id": str(row.get("id", number)), "task": str(row.get("task", "-")),
                         "prompt": row["prompt"], "response": row["response"],
                         "reference": row.get("reference")})
        if limit is not None and len(rollouts) == limit:
            break
    if not rollouts:
        fail(2, f"{path} holds no rollouts")
    return rollouts


def backend_problem(config: JudgeConfig) -> str | None:
    """Why the backend the judge would serve cannot run here, as one paragraph, or None."""
    resolution = BackendResolver(config).resolve()  # the judge's own rule: file > env > default
    spec = resolution.spec
    if spec.kind == "ccode":
        if shutil.which(config.claude_cli_path):
            return None
        why = (f"the Claude Code CLI `{config.claude_cli_path}` is not found or not "
               "executable")
        fix = ("Set CLAUDE_CLI_PATH to the CLI (and log in with `claude login`), or judge "
               "through LiteLLM: set the provider's key (e.g. ANTHROPIC_API_KEY) and run "
               "`python switch_judge_backend.py litellm MODEL` (e.g. "
               "anthropic/claude-sonnet-4-20250514).")
    else:
        provider = spec.name.split("/", 1)[0] if "/" in spec.name else ""
        names = PROVIDER_ENV.get(provider)
        if names is None or any(os.environ.get(name) for name in names):
            return None
        why = f"none of {', '.join(names)} is set"
        fix = (f"Set {' or '.join(names)}, or switch with `python switch_judge_backend.py "
               "litellm MODEL` to a model you have a key for (or `python "
               "switch_judge_backend.py ccode` with CLAUDE_CLI_PATH set).")
    return (f"No usable judge backend: the judge would use {spec} ({resolution.where}), but "
            f"{why}. {fix} To try this script without any model, add --dry-run.")


# -- Ray and the judge --------------------------------------------------------------------


def connect_ray() -> Any:
    """Join the cluster (RAY_ADDRESS, or the one `ray start` left here) or start one."""
    # Read when Ray is imported: a node this script starts then uses 127.0.0.1, not the
    # machine's network address. Joining an existing cluster is unaffected.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    address = cluster_address()
    if address is None:
        # A cluster that ends with this script has no use for a dashboard (launch.sh has one).
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return ray


def start_judge(dry_run: bool) -> Any:
    """The judge's handle: the running one, or a new one; the fake one for a dry run."""
    try:
        if dry_run:
            fake = {"ccode": FAKE_BACKEND, "litellm": FAKE_BACKEND}
            return ray_judge.start_judge(name=DRY_RUN_JUDGE, backend_registry=fake)
        return ray_judge.start_judge()
    except Exception as exc:  # e.g. a bad rubric file: Ray's error ends with the cause
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"The judge did not start: {lines[-1]}", file=sys.stderr)
        raise typer.Exit(2) from None


def score_all(client: ray_judge.JudgeClient, rollouts: list[dict[str, Any]], batch_size: int,
              in_flight: int) -> list[ray_judge.Verdict]:
    """Verdicts in the order of ``rollouts``; fewer of them when the first batch all failed."""
    requests = [{k: r[k] for k in ("prompt", "response", "reference")} for r in rollouts]
    batches = [requests[i:i + batch_size] for i in range(0, len(requests), batch_size)]
    progress = Progress(len(requests))
    # The first batch goes alone: a bad key or an exhausted subscription then costs one
    # batch, not the whole set.
    first = client.score_batch(batches[0])
    progress.advance(len(first))
    if not any(v.ok for v in first):
        progress.close()
        return first
    rest = asyncio.run(score_rest(client, batches[1:], in_flight, progress))
    progress.close()
    return [v for batch in [first, *rest] for v in batch]


async def score_rest(client: ray_judge.JudgeClient, batches: list[list[dict[str, Any]]],
                     in_flight: int, progress: Progress) -> list[list[ray_judge.Verdict]]:
    """Keep ``in_flight`` batches at the judge, as rollout workers do; the client sends
    the ones in flight together and resubmits them if the judge restarts meanwhile."""
    slots = asyncio.Semaphore(in_flight)

    async def one(batch: list[dict[str, Any]]) -> list[ray_judge.Verdict]:
        async with slots:
            verdicts = await client.score_batch_async(batch)
        progress.advance(len(verdicts))
        return verdicts

    return list(await asyncio.gather(*(one(batch) for batch in batches)))


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line per ~10% otherwise."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self._tenths = 0

    def advance(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        if self.tty:
            filled = self.WIDTH * self.done // self.total
            bar = "#" * filled + "." * (self.WIDTH - filled)
            print(f"\r[{bar}] {self.done}/{self.total} {rate:7.1f} verdicts/s", end="",
                  file=sys.stderr, flush=True)
        elif 10 * self.done // self.total > self._tenths:
            self._tenths = 10 * self.done // self.total
            print(f"scored {self.done}/{self.total} ({100 * self.done // self.total}%), "
                  f"{rate:.1f} verdicts/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


# -- the summary --------------------------------------------------------------------------


def _mean(scores: list[float]) -> float | None:
    return sum(scores) / len(scores) if scores else None


def summarise(rollouts: list[dict[str, Any]], verdicts: list[ray_judge.Verdict],
              wall_s: float, total: int) -> dict[str, Any]:
    """Numbers for the table and for --json. Only ok verdicts have a score to average.

    ``rollouts`` are the scored ones, ``total`` how many there were to score.
    """
    pairs = list(zip(rollouts, verdicts, strict=True))
    ok_scores = [v.score for v in verdicts if v.ok]
    latencies = [v.latency_s for v in verdicts]
    first_errors: dict[str, dict[str, str]] = {}
    for rollout, v in pairs:
        if not v.ok and v.status.value not in first_errors:
            first_errors[v.status.value] = {"id": rollout["id"], "error": v.error or ""}
    by_task: dict[str, dict[str, Any]] = {}
    for task in sorted({r["task"] for r, _ in pairs}):
        task_verdicts = [v for r, v in pairs if r["task"] == task]
        scores = [v.score for v in task_verdicts if v.ok]
        by_task[task] = {"items": len(task_verdicts), "ok": len(scores),
                         "mean_score": _mean(scores)}
    costs = [v.cost_usd for v in verdicts if v.cost_usd is not None]
    tokens_in = [v.input_tokens for v in verdicts if v.input_tokens is not None]
    tokens_out = [v.output_tokens for v in verdicts if v.output_tokens is not None]
    return {
        "items": len(verdicts),
        "ok": len(ok_scores),
        "failed": len(verdicts) - len(ok_scores),
        "cached": sum(v.cached for v in verdicts),
        "mean_score": _mean(ok_scores),
        "by_status": dict(Counter(v.status.value for v in verdicts).most_common()),
        "by_backend": dict(Counter(v.backend or "?" for v in verdicts).most_common()),
        "by_task": by_task,
        "first_errors": first_errors,
        "latency_s": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                      "max": max(latencies, default=None)},
        "cost_usd": sum(costs) if costs else None,
        "input_tokens": sum(tokens_in) if tokens_in else None,
        "output_tokens": sum(tokens_out) if tokens_out else None,
        "wall_s": wall_s,
        "verdicts_per_s": len(verdicts) / wall_s if wall_s > 0 else None,
        "stopped_early": len(verdicts) < total,
    }


def _num(value: float | None, spec: str = ".3f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.items())


def print_summary(summary: dict[str, Any], title: str, startup_s: float) -> None:
    lat = summary["latency_s"]
    rows = [
        ("items", f"{summary['items']} ({summary['cached']} from the judge's cache)"
                  if summary["cached"] else str(summary["items"])),
        ("mean score (ok only)", f"{_num(summary['mean_score'])}  over {summary['ok']} ok"),
        ("by status", _counts(summary["by_status"])),
        ("by backend", _counts(summary["by_backend"])),
        ("latency p50/p95/max", f"{_num(lat['p50'], '.2f')} / {_num(lat['p95'], '.2f')} / "
                                f"{_num(lat['max'], '.2f')} s"),
        ("cost", _num(summary["cost_usd"], ".4f", " USD") if summary["cost_usd"] is not None
         else "not reported"),
        ("tokens in/out", f"{_num(summary['input_tokens'], ',')} / "
                          f"{_num(summary['output_tokens'], ',')}"),
        ("wall time", f"{summary['wall_s']:.1f} s, "
                      f"{_num(summary['verdicts_per_s'], '.1f')} verdicts/s "
                      f"(+ {startup_s:.1f} s to get Ray and the judge ready)"),
        ("mean score by task", ""),
    ]
    for task, t in summary["by_task"].items():
        rows.append((f"  {task}", f"{_num(t['mean_score'])}  over {t['ok']}/{t['items']} ok"))
    print(title)
    for label, value in rows:
        print(f"  {label:<22}{value}".rstrip())
    if summary["first_errors"]:
        print("failures (no score; left out of the mean, never counted as 0.0):")
        for status, first in summary["first_errors"].items():
            error = first["error"] if len(first["error"]) <= 160 else first["error"][:157] + "..."
            print(f"  {status:<14}{summary['by_status'][status]:>5}  first: {first['id']}: "
                  f"{error}")


def write_json(path: Path, rollouts: list[dict[str, Any]], verdicts: list[ray_judge.Verdict],
               summary: dict[str, Any]) -> None:
    items = [{"id": r["id"], "task": r["task"], **asdict(v)}
             for r, v in zip(rollouts, verdicts, strict=True)]
    path.write_text(json.dumps({"summary": summary, "verdicts": items}, indent=1,
                               ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# -- the command --------------------------------------------------------------------------


@app.command()
def main(
    *,
    file: Annotated[Path, typer.Option(help="Rollouts, one JSON object per line.")] = BUNDLED,
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Rollouts per score_batch call.")] = 64,
    in_flight: Annotated[int, typer.Option(min=1, help="Batches sent before waiting.")] = 4,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Use a separate judge with a fake model: needs no backend.")] = False,
    keep_judge: Annotated[bool, typer.Option(
        "--keep-judge", help="Leave the dry-run judge running (on a cluster that outlives "
                             "this script).")] = False,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write every verdict and the summary to this file.")] = None,
) -> None:
    """Score rollouts through the ray_judge pool and print a summary."""
    rollouts = load_rollouts(file, limit)
    try:
        config = JudgeConfig.from_env()
    except ConfigError as exc:
        fail(2, str(exc))
    problem = None if dry_run else backend_problem(config)
    if problem:
        fail(2, problem)

    started = time.monotonic()
    ray = connect_ray()
    try:
        start_judge(dry_run)
        client = ray_judge.JudgeClient(DRY_RUN_JUDGE if dry_run else None)
        ready = time.monotonic()
        try:
            verdicts = score_all(client, rollouts, batch_size, in_flight)
        finally:
            client.close()
        wall_s = time.monotonic() - ready
    finally:
        if dry_run and not keep_judge:
            ray_judge.stop_judge(name=DRY_RUN_JUDGE)
        ray.shutdown()  # leaves a cluster we joined running; ends one we started

    scored = rollouts[:len(verdicts)]  # all of them, unless the first batch all failed
    summary = summarise(scored, verdicts, wall_s, total=len(rollouts))
    fake_note = (" (dry run: the built-in fake model, FakeBackend; its scores judge "
                 "nothing)") if dry_run else ""
    print_summary(summary, f"Scored {len(verdicts)} of {len(rollouts)} rollouts from {file}"
                           f"{fake_note}", startup_s=ready - started)
    if json_out is not None:
        write_json(json_out, scored, verdicts, summary)
        print(f"verdicts and summary written to {json_out}")
    if dry_run:
        print(textwrap.fill(REAL_RUN_HINT, width=88, break_long_words=False,
                            break_on_hyphens=False))
    if summary["ok"] == 0:
        status = next(iter(summary["by_status"]))
        error = summary["first_errors"][status]["error"][:300]
        what = f"all {summary['items']} verdicts failed ({status}: {error})."
        what = f"Stopped after the first batch: {what}" if summary["stopped_early"] else what
        fail(1, f"{what[0].upper()}{what[1:]} Hint: {HINTS.get(status, DEFAULT_HINT)}")


if __name__ == "__main__":
    app()
