"""The pool's commands on ``ray-judge``: start, stop, status, serve-rm, watch,
grafana-dashboard and shift-plot. :mod:`ray_judge.cli` mounts them on its ``app``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import JudgeConfig
from .common import connect_ray, fail, load_config, running_judge, user_errors
from .status_text import format_live_status, insecure_text

if TYPE_CHECKING:
    from ..integrations.openrlhf import RewardServer

__all__ = ["grafana_dashboard", "serve_rm", "shift_plot", "start", "status", "stop",
           "watch_judge"]


def start() -> None:
    """Start the judge on the running Ray cluster (or report the one already running)."""
    config = load_config()
    connect_ray()
    from ..pool.service import start_judge

    with user_errors():
        handle = start_judge()
    import ray

    typer.echo(f"Judge {config.actor_name!r} is up in namespace {config.namespace!r}.")
    typer.echo(format_live_status(ray.get(handle.status.remote(), timeout=30)))


def stop() -> None:
    """Stop the judge and its workers (CLI processes are killed); Ray keeps running."""
    config = load_config()
    connect_ray()
    from ..pool.service import stop_judge

    if stop_judge():
        typer.echo(f"Stopped judge {config.actor_name!r} in namespace {config.namespace!r}.")
    else:
        typer.echo(f"No judge {config.actor_name!r} in namespace {config.namespace!r} runs.")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """The running judge's backend, load, counts, latency and cost."""
    config = load_config()
    judge, error = running_judge(config)
    if judge is None:
        fail(f"no running judge: {error}")
    typer.echo(json.dumps(judge) if as_json else format_live_status(judge))


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
    config = load_config()
    if token_file is not None and insecure_no_token:
        fail("--insecure-no-token and --token-file contradict each other: keep one")
    from ..integrations.access import read_token, require_token
    from ..integrations.openrlhf import RewardServer

    # Before Ray: a refusal is immediate, and nothing listens or joins the cluster.
    try:
        token = None if token_file is None else read_token(token_file)
        insecure = require_token(host, port, token, insecure_no_token)
        server = RewardServer(failure_reward=failure_reward, token=token, judge=judge)
    except ValueError as exc:  # AccessError, and a bad --failure-reward
        fail(str(exc))
    connect_ray()
    asyncio.run(_serve_until_signal(server, host, port, config, insecure))


async def _serve_until_signal(server: RewardServer, host: str, port: int,
                              config: JudgeConfig, insecure: bool) -> None:
    from ..integrations.openrlhf import announce, serve, server_record

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runner, bound = await serve(server, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
    typer.echo(f"Reward server for OpenRLHF on http://{host}:{bound}/get_reward: judge "
               f"{config.actor_name!r} in namespace {config.namespace!r}, failure reward "
               f"{server.failure_reward}, token {'required' if server.token else 'not required'}"
               ".")
    if insecure:
        typer.echo(f"WARNING: {insecure_text(host)} (--insecure-no-token); `ray-judge "
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


def watch_judge(
    interval: Annotated[float, typer.Option(
        "--interval", min=0.2, help="Seconds between redraws.")] = 1.0,
) -> None:
    """Watch the running judge: backend, rate, statuses, load, failover, switches."""
    from ..pool.cluster import NO_CLUSTER, JudgeUnreachable, cluster_address

    config = load_config()
    address = cluster_address()
    if address is None:
        fail(NO_CLUSTER)
    from ..monitoring.watch import watch

    try:
        watch(config, address, interval_s=interval)
    except JudgeUnreachable as exc:
        fail(str(exc))
    except ConnectionError as exc:
        fail(f"could not connect to Ray at {address}: {exc}")


def grafana_dashboard(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write it into this directory (where Grafana provisions dashboards, "
        "e.g. /tmp/ray/session_latest/metrics/grafana/dashboards) instead of printing it.",
    )] = None,
) -> None:
    """Print the Grafana dashboard for the judge's metrics, or write it with --out."""
    from ..monitoring.dashboard import dashboard_text, write_dashboard

    if out is None:
        typer.echo(dashboard_text(), nl=False)
        return
    try:
        path = write_dashboard(out)
    except OSError as exc:
        fail(f"cannot write the dashboard into {str(out)!r}: {exc.strerror or exc}")
    typer.echo(f"Wrote {path}")
    typer.echo("Grafana loads it at its next provisioning scan (or import it in the UI: "
               "Dashboards > New > Import).")


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
    config = load_config()
    if source is not None:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"cannot read pairs from {source}: {exc}")
    else:
        from ..pool.cluster import JudgeUnreachable, live_shift_pairs

        try:
            data = live_shift_pairs(config)
        except JudgeUnreachable as exc:
            fail(f"no running judge: {exc}")
    if judge not in data:
        known = ", ".join(sorted(data)) or "none: no switch measured yet"
        fail(f"no shift measured for judge {judge!r}; judges with one: {known}")
    if save is not None:
        save.write_text(json.dumps(data), encoding="utf-8")
    from ..shift.plot import render_shift_plot

    try:
        with user_errors():
            path = render_shift_plot(data[judge], out)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"Wrote {path}: {data[judge]['line']}")
