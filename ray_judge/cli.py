"""The command lines: ``switch_judge_backend.py`` / ``switch-judge-backend``, and ``ray-judge``.

Layout, top to bottom: the hook that notifies a running judge, helpers, the four switch
commands (``litellm``, ``ccode``, ``show``, ``remove``) on :data:`switch_app`, then
:data:`app` (``ray-judge``), which mounts them as ``ray-judge switch ...`` and is where the
pool's own commands go, then the entry points.

Nothing here imports ray or litellm at import time: switching must answer in a blink,
also on a login node where importing ray takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from .config import JudgeConfig
from .errors import JudgeError
from .selection.resolver import (
    BackendResolver,
    Resolution,
    permission_warnings,
    remove_override,
    write_override,
)
from .spec import CCODE_MODELS, DEFAULT_SPEC, LITELLM_PREFIX, BackendSpec

if TYPE_CHECKING:
    from .integrations.openrlhf import RewardServer

__all__ = ["Notifier", "app", "main", "notify_running_judge", "switch_app", "switch_main"]

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
    from .pool.cluster import JudgeUnreachable, cluster_address, refresh_running_judge

    if cluster_address() is None:
        return "No Ray cluster found here (RAY_ADDRESS unset), so no running judge to notify."
    try:
        now = refresh_running_judge(config)
    except JudgeUnreachable as exc:
        return f"Could not notify a running judge: {exc}."
    return f"Running judge notified: it now serves {now['backend']} (source: {now['source']})."


# ---------------------------------------------------------------------------- helpers


def _fail(message: str) -> NoReturn:
    # One line, whatever the OS or a parser put in the message, so scripts can grep it.
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    raise typer.Exit(code=1)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn ray_judge's own errors (bad env, bad spec, unwritable file) into one line."""
    try:
        yield
    except JudgeError as exc:
        _fail(str(exc))


def _load_config() -> JudgeConfig:
    _mute_last_resort_logging()
    with _user_errors():
        return JudgeConfig.from_env()


def _mute_last_resort_logging() -> None:
    # The commands print the resolver's problems themselves; with no handler anywhere,
    # Python's last-resort handler would print each a second time, raw, on stderr.
    # A NullHandler stops only that: records still reach any handler set up later.
    library_logger = logging.getLogger("ray_judge")
    if not library_logger.handlers:
        library_logger.addHandler(logging.NullHandler())


def _litellm_spec(model: str) -> BackendSpec:
    text = model.strip()
    if text.startswith(LITELLM_PREFIX):  # a whole spec pasted from a file or the README
        text = text[len(LITELLM_PREFIX):]
    if text in CCODE_MODELS:
        _fail(f"{model!r} is a Claude Code alias, not a LiteLLM model; use: ccode {text}")
    with _user_errors():
        return BackendSpec.litellm(text)


def _ccode_spec(alias: str) -> BackendSpec:
    name = alias.strip()
    for candidate in (name, f"ccode-{name}"):  # ``4-opus`` is short for ``ccode-4-opus``
        if candidate in CCODE_MODELS:
            return BackendSpec.ccode(candidate)
    _fail(f"unknown Claude Code alias {alias!r}; known: {', '.join(sorted(CCODE_MODELS))}")


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
    config = _load_config()
    _write(config, _litellm_spec(model))


@switch_app.command("ccode")
def switch_ccode(
    alias: Annotated[str, typer.Argument(
        help=f"Claude Code alias: {', '.join(sorted(CCODE_MODELS))} ('ccode-' may be left out)",
    )] = DEFAULT_SPEC,
) -> None:
    """Use the Claude Code CLI (writes the alias, ccode-4-sonnet by default)."""
    config = _load_config()
    _write(config, _ccode_spec(alias))


def _write(config: JudgeConfig, spec: BackendSpec) -> None:
    with _user_errors():
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
    config = _load_config()
    resolution = BackendResolver(config).resolve()
    warnings = permission_warnings(resolution.path)
    judge, judge_error = _live_status(config) if live else (None, "not asked (--no-live)")
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
    from .judging.catalog import JudgeCatalog

    try:
        versions = JudgeCatalog.build(config).versions()
    except JudgeError as exc:
        return f"Judges file: {exc}"
    names = ", ".join(f"{name} ({version})" for name, version in versions.items())
    return f"Judges file: {config.judges_file}: {names}"


def _live_status(config: JudgeConfig) -> tuple[dict | None, str | None]:
    from .pool.cluster import JudgeUnreachable, cluster_address, live_status

    if cluster_address() is None:
        return None, "no Ray cluster found here (RAY_ADDRESS unset)"
    try:
        return live_status(config), None
    except JudgeUnreachable as exc:
        return None, str(exc)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _format_retries(status: dict) -> str:
    n = status.get("format_retries") or 0
    return f" (+{n} correction turns)" if n else ""


def format_live_status(status: dict, *, warnings: bool = True) -> str:
    """A person's view of the judge's ``status()`` (``warnings``: the override file's)."""
    in_flight = sum(status.get("in_flight", {}).values())
    lines = [
        f"Running judge: serving {status['backend']} (source: {status['source']}), "
        f"up {status['uptime_s']:.0f}s, {status['workers']} workers",
        f"  load:     {in_flight} in flight, {status['queued']} queued",
        f"  verdicts: {status['total']} (p50 {_seconds(status['latency_p50_s'])}, "
        f"p95 {_seconds(status['latency_p95_s'])}), {status['retries']} retries"
        f"{_format_retries(status)}, "
        f"{status['switches']} switches, cost ${status['cost_usd']:.4f}",
    ]
    if status.get("judges"):
        lines.append("  judges:   " + ", ".join(
            f"{name} ({version})" for name, version in status["judges"].items()))
    for backend, counts in status.get("counts", {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"    {backend}: {detail}")
    lines += shift_lines(status)
    if status.get("override_problem"):
        lines.append(f"  problem:  {status['override_problem']}")
    if warnings:
        lines += [f"  warning:  {w}; whoever can write it can change the reward"
                  for w in status.get("override_warnings") or []]
    lines += reward_server_lines(status)
    return "\n".join(lines)


def reward_server_lines(status: dict) -> list[str]:
    """One line per running ``serve-rm``; a WARNING for one without a token."""
    lines = []
    for rm in status.get("reward_servers") or []:
        where = f"{rm['url']} (pid {rm['pid']} on {rm['node']})"
        if rm["insecure"]:
            lines.append(f"  WARNING:  {_insecure_text(where)} (--insecure-no-token)")
        else:
            lines.append(f"  reward:   {where}, "
                         f"{'token required' if rm['token'] else 'loopback only, no token'}")
    return lines


def shift_lines(status: dict) -> list[str]:
    """The latest switch's score shift, one line per judge, and what calibration does."""
    lines = []
    for judge, report in sorted((status.get("shift") or {}).items()):
        name = "" if judge == "default" else f"judge {judge} "
        lines.append(f"  shift:    {name}{report['line']}")
    for judge, calibration in sorted((status.get("calibration") or {}).items()):
        name = "" if judge == "default" else f"judge {judge} "
        maps = ", ".join(f"{b} on {m['pairs']} pairs"
                         for b, m in sorted(calibration["maps"].items())) or (
            f"none yet (needs {calibration['min_pairs']} pairs)")
        lines.append(f"  calibrate: {name}{calibration['mode']} onto "
                     f"{calibration['reference']}; maps: {maps}")
    return lines


@switch_app.command("remove")
def remove() -> None:
    """Delete the override file, reverting to LLM_JUDGE_NAME or the default."""
    config = _load_config()
    with _user_errors():
        removed = remove_override(config.backend_file)
    if not removed:
        typer.echo(f"No override file at {config.backend_file}; nothing to remove.")
        _report_effective(config)
        return
    typer.echo(f"Removed override file {config.backend_file}")
    _report_effective(config)
    _notify(config, None)


# ------------------------------------------------------------------------ ray-judge

app = typer.Typer(
    name="ray-judge",
    no_args_is_help=True,
    add_completion=False,
    help="An LLM-as-a-judge pool for RL training on Ray that switches backends live.",
)
app.add_typer(switch_app, name="switch",
              help="Switch the judge backend (same commands as switch_judge_backend.py).")
app.command("show", help="Show the effective backend (same as `switch show`).")(show)



def _connect_ray() -> None:
    from .pool.cluster import cluster_address

    address = cluster_address()
    if address is None:
        _fail("no Ray cluster found here: start one with ./launch.sh or `ray start --head`, "
              "or set RAY_ADDRESS")
    import ray

    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)


@app.command("start")
def start() -> None:
    """Start the judge on the running Ray cluster (or report the one already running)."""
    config = _load_config()
    _connect_ray()
    from .pool.service import start_judge

    with _user_errors():
        handle = start_judge()
    import ray

    typer.echo(f"Judge {config.actor_name!r} is up in namespace {config.namespace!r}.")
    typer.echo(format_live_status(ray.get(handle.status.remote(), timeout=30)))


@app.command("stop")
def stop() -> None:
    """Stop the judge and its workers (CLI processes are killed); Ray keeps running."""
    config = _load_config()
    _connect_ray()
    from .pool.service import stop_judge

    if stop_judge():
        typer.echo(f"Stopped judge {config.actor_name!r} in namespace {config.namespace!r}.")
    else:
        typer.echo(f"No judge {config.actor_name!r} in namespace {config.namespace!r} runs.")


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """The running judge's backend, load, counts, latency and cost."""
    config = _load_config()
    judge, error = _live_status(config)
    if judge is None:
        _fail(f"no running judge: {error}")
    typer.echo(json.dumps(judge) if as_json else format_live_status(judge))


@app.command("serve-rm")
def serve_rm(
    *,
    failure_reward: Annotated[float, typer.Option(
        help="Required: the reward a sample gets when the judge could not judge it "
             "(OpenRLHF needs a number for every sample; ray_judge never picks one).")],
    host: Annotated[str, typer.Option(
        help="Interface to listen on; any but a loopback address (127.0.0.0/8, ::1, "
             "localhost) opens the reward to the network and needs --token-file.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 5000,
    token_file: Annotated[Path | None, typer.Option(
        help="A file (mode 600, at least 16 characters) holding a token every request "
             "must carry (Bearer, or the password of basic auth: "
             "http://rm:TOKEN@host:port/get_reward).")] = None,
    insecure_no_token: Annotated[bool, typer.Option(
        "--insecure-no-token",
        help="Listen beyond loopback without a token: anyone who reaches the port can "
             "read the judge's prompts and set the rewards (ray-judge status warns).")
    ] = False,
    judge: Annotated[str | None, typer.Option(
        help="A named judge definition to judge with (default: the default judge).")] = None,
) -> None:
    """Serve OpenRLHF's --reward.remote_url from the running judge."""
    config = _load_config()
    if token_file is not None and insecure_no_token:
        _fail("--insecure-no-token and --token-file contradict each other: keep one")
    from .integrations.access import read_token, require_token
    from .integrations.openrlhf import RewardServer

    # Before Ray: a refusal is immediate, and nothing listens or joins the cluster.
    try:
        token = None if token_file is None else read_token(token_file)
        insecure = require_token(host, port, token, insecure_no_token)
        server = RewardServer(failure_reward=failure_reward, token=token, judge=judge)
    except ValueError as exc:  # AccessError, and a bad --failure-reward
        _fail(str(exc))
    _connect_ray()
    asyncio.run(_serve_until_signal(server, host, port, config, insecure))


async def _serve_until_signal(server: RewardServer, host: str, port: int,
                              config: JudgeConfig, insecure: bool) -> None:
    from .integrations.openrlhf import announce, serve, server_record

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runner, bound = await serve(server, host, port)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")
    typer.echo(f"Reward server for OpenRLHF on http://{host}:{bound}/get_reward: judge "
               f"{config.actor_name!r} in namespace {config.namespace!r}, failure reward "
               f"{server.failure_reward}, token {'required' if server.token else 'not required'}"
               ".")
    if insecure:
        typer.echo(f"WARNING: {_insecure_text(host)} (--insecure-no-token); `ray-judge "
                   "status` shows this warning while it runs.", err=True)
    announcer = asyncio.create_task(announce(
        server_record(host, bound, server.token is not None, insecure), config.actor_name,
        config.namespace))
    typer.echo(f"READY http://{host}:{bound}", err=True)
    try:
        await stop.wait()
    finally:
        announcer.cancel()
        await asyncio.gather(announcer, return_exceptions=True)
        await runner.cleanup()


def _insecure_text(where: str) -> str:
    return (f"the reward server on {where} listens beyond loopback without a token: anyone "
            "who can reach it can read what the judge is asked and set the rewards the "
            "trainer gets")


@app.command("watch")
def watch_judge(
    interval: Annotated[float, typer.Option(
        "--interval", min=0.2, help="Seconds between redraws.")] = 1.0,
) -> None:
    """Watch the running judge: backend, rate, statuses, load, failover, switches."""
    from .pool.cluster import cluster_address

    config = _load_config()
    address = cluster_address()
    if address is None:
        _fail("no Ray cluster found here: start one with ./launch.sh or `ray start --head`, "
              "or set RAY_ADDRESS")
    from .monitoring.watch import watch
    from .pool.cluster import JudgeUnreachable

    try:
        watch(config, address, interval_s=interval)
    except JudgeUnreachable as exc:
        _fail(str(exc))
    except ConnectionError as exc:
        _fail(f"could not connect to Ray at {address}: {exc}")


@app.command("grafana-dashboard")
def grafana_dashboard(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write it into this directory (where Grafana provisions dashboards, "
        "e.g. /tmp/ray/session_latest/metrics/grafana/dashboards) instead of printing it.",
    )] = None,
) -> None:
    """Print the Grafana dashboard for the judge's metrics, or write it with --out."""
    from .monitoring.dashboard import dashboard_text, write_dashboard

    if out is None:
        typer.echo(dashboard_text(), nl=False)
        return
    try:
        path = write_dashboard(out)
    except OSError as exc:
        _fail(f"cannot write the dashboard into {str(out)!r}: {exc.strerror or exc}")
    typer.echo(f"Wrote {path}")
    typer.echo("Grafana loads it at its next provisioning scan (or import it in the UI: "
               "Dashboards > New > Import).")


@app.command("shift-plot")
def shift_plot(
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("shift.png"),
    judge: Annotated[str, typer.Option("--judge", help="Judge definition's name.")] = "default",
    source: Annotated[Path | None, typer.Option(
        "--input", help="Read the pairs from this JSON file (written by --save) instead of "
        "asking the running judge.", show_default=False)] = None,
    save: Annotated[Path | None, typer.Option(
        "--save", help="Also write the pairs as JSON to this file.", show_default=False,
    )] = None,
) -> None:
    """Draw the latest switch's paired scores (old vs new backend) as a PNG."""
    config = _load_config()
    if source is not None:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(f"cannot read pairs from {source}: {exc}")
    else:
        from .pool.cluster import JudgeUnreachable, live_shift_pairs

        try:
            data = live_shift_pairs(config)
        except JudgeUnreachable as exc:
            _fail(f"no running judge: {exc}")
    if judge not in data:
        known = ", ".join(sorted(data)) or "none: no switch measured yet"
        _fail(f"no shift measured for judge {judge!r}; judges with one: {known}")
    if save is not None:
        save.write_text(json.dumps(data), encoding="utf-8")
    from .shift.plot import render_shift_plot

    try:
        with _user_errors():
            path = render_shift_plot(data[judge], out)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"Wrote {path}: {data[judge]['line']}")


# ---------------------------------------------------------------------- entry points


def main() -> None:
    """Run ``ray-judge``."""
    app()


def switch_main() -> None:
    """Run ``switch-judge-backend`` (also ``python switch_judge_backend.py``)."""
    switch_app()


if __name__ == "__main__":
    main()
