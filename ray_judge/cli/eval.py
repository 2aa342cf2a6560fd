"""``ray-judge eval CASES``: a judge evaluated against labels, backends side by side.

Everything that can be wrong with the command line or the cases file is found before
anything is judged (and before Ray is imported): the whole file is read
(:func:`ray_judge.quality.cases.read_cases`), every ``--backend`` parsed, every
``--min`` bound checked against the known figures, matplotlib looked for when
``--plot`` asks for a picture. Then each backend judges every case through the running
judge, or a judge in this process when none runs (:mod:`.eval_judge`); the table, the
worst cases, the JSON and the picture follow, and ``--min`` decides the exit code.

Cases of a panel judge are judged by the panel (``@panel``, the default when any case
names one), and when every case names the same panel its members appear beside it,
read from the panel's own verdicts (:func:`ray_judge.quality.run.member_columns`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from ..quality.cases import CasesError, read_cases
from ..quality.gate import Bound, shortfalls
from ..quality.run import PANEL
from ..spec import BackendSpec
from .common import fail, load_config, user_errors

__all__ = ["eval_command"]

#: Figures only a panel's column has: a bound on them ignores the other columns.
PANEL_FIGURES = frozenset({"escalated"})


def eval_command(
    cases_file: Annotated[Path, typer.Argument(
        metavar="CASES", help="Labelled cases, one JSON object per line (docs/eval.md).",
        show_default=False)],
    *,
    judge: Annotated[str | None, typer.Option(
        "--judge", help="The judge of the cases that name none (default: the built-in "
        "judge of their kind).")] = None,
    backends: Annotated[list[str] | None, typer.Option(
        "--backend", help="A backend to evaluate (repeat for several, side by side), or "
        "@panel: panel judges' cases by their panels; default: what the judge serves now "
        "(@panel when a case names a panel judge).", show_default=False)] = None,
    samples: Annotated[int, typer.Option(
        "--samples", min=1, max=100,
        help="Judge each case K times; reports self_consistency.")] = 1,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Pass mark of `pass` cases on the judge's scale (default: the "
        "middle of the scale).", show_default=False)] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write every figure and every case's verdicts to this file.",
        show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Draw expected vs got per backend into this PNG (needs matplotlib).",
        show_default=False)] = None,
    minimum: Annotated[list[str] | None, typer.Option(
        "--min", help="METRIC=VALUE: exit 1 when a backend falls short (for mae, "
        "outside_distance, cost and latency the value is a maximum). Repeatable.",
        show_default=False)] = None,
    worst: Annotated[int, typer.Option(
        "--worst", min=0, help="Worst cases listed per backend.")] = 5,
    show_raw: Annotated[bool, typer.Option(
        "--show-raw", help="Show the judge's own text under each worst case.")] = False,
) -> None:
    """Evaluate a judge against labelled cases on one or more backends, side by side."""
    config = load_config()
    with user_errors():
        from ..judging.catalog import JudgeCatalog

        catalog = JudgeCatalog.build(config)
    try:
        bounds = [Bound.parse(text) for text in minimum or []]
    except ValueError as exc:
        fail(f"--min: {exc}")
    try:
        specs = [text if text == PANEL else str(BackendSpec.parse(text))
                 for text in backends or []]
    except ValueError as exc:  # InvalidSpecError
        fail(f"--backend: {exc}")
    if plot is not None:
        from ..quality.plot import require_matplotlib

        with user_errors():
            require_matplotlib()
    try:
        cases = read_cases(cases_file, catalog, judge=judge)
    except CasesError as exc:
        for line in str(exc).splitlines():
            typer.echo(f"error: {line}" if line == str(exc).splitlines()[0] else f"  {line}",
                       err=True)
        raise typer.Exit(code=1) from None
    plans = {c.judge: catalog.get(c.judge).panel_plan for c in cases}
    panels = {judge: plan.labels for judge, plan in plans.items() if plan is not None}
    if PANEL in specs and not panels:
        fail(f"--backend {PANEL}: no case names a panel judge (they name "
             f"{', '.join(sorted({str(c.judge) for c in cases}))})")
    if not panels and any(b.metric in PANEL_FIGURES for b in bounds):
        fail(f"--min: {', '.join(sorted(PANEL_FIGURES))} is a panel's figure and no case "
             "names a panel judge")
    results, where = asyncio.run(_judge(config, catalog, cases, specs=specs, samples=samples,
                                        threshold=threshold, panels=panels))
    _report(results, where, samples=samples, threshold=threshold, json_out=json_out,
            plot=plot, bounds=bounds, worst=worst, show_raw=show_raw)


async def _judge(config, catalog, cases, *, specs, samples, threshold, panels):  # type: ignore[no-untyped-def]
    from ..quality.run import judge_cases
    from .eval_judge import local_judge, running_judge_or_none

    judge, why = running_judge_or_none(config, timeout_s=config.deadline_s)
    if judge is None:
        judge = local_judge(config, catalog)
        typer.echo(f"No running judge ({why}): judging in this process.", err=True)
    differ = sorted({c.judge for c in cases if judge.versions.get(c.judge)
                     != catalog.versions().get(c.judge)})
    if differ:
        await judge.aclose()
        fail(f"the judge judging here has other definitions of {', '.join(differ)} than this "
             f"shell's judges file (restart the judge, or point LLM_JUDGE_JUDGES_FILE at its "
             f"file); it knows {judge.versions}")
    specs = specs or [PANEL if panels else judge.serving]
    typer.echo(f"Judging {len(cases)} cases x {samples} sample(s) on {', '.join(specs)} "
               f"with {judge.where}.", err=True)
    try:
        results = await judge_cases(judge, cases, specs, samples=samples, threshold=threshold,
                                    panels=panels, serving=judge.serving)
    finally:
        await judge.aclose()
    return results, judge.where


def _report(results, where, *, samples, threshold, json_out, plot, bounds, worst,  # type: ignore[no-untyped-def]
            show_raw) -> None:
    from rich.console import Console

    from ..quality.metrics import summarize
    from .eval_report import metrics_table, report_json, worst_lines

    figures = {spec: summarize(judged) for spec, judged in results.items()}
    console = Console(highlight=False, soft_wrap=True)
    n = len(next(iter(results.values())))
    console.print(metrics_table(figures, f"{n} cases, judged by {where}"))
    for spec, judged in results.items():
        lines = worst_lines(judged, limit=worst, show_raw=show_raw)
        if worst and lines:
            console.print(f"\nWorst cases on {spec}:", markup=False)
            for line in lines:
                console.print(f"  {line}", markup=False)
        elif worst:
            console.print(f"\nEvery case right on {spec}.", markup=False)
    if json_out is not None:
        data = report_json(figures, results, samples=samples, threshold=threshold)
        try:
            json_out.write_text(json.dumps(data, indent=1, default=str) + "\n",
                                encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {str(json_out)!r}: {exc.strerror or exc}")
        console.print(f"Wrote {json_out}", markup=False)
    if plot is not None:
        from ..quality.plot import render_eval_plot

        with user_errors():
            console.print(f"Wrote {render_eval_plot(results, plot)}", markup=False)
    # a panel's own figures are bounded on the panel's column only
    missed = shortfalls(figures, [b for b in bounds if b.metric not in PANEL_FIGURES])
    missed += shortfalls({PANEL: figures.get(PANEL, {})},
                         [b for b in bounds if b.metric in PANEL_FIGURES])
    if missed:
        for line in missed:
            typer.echo(f"FAILED --min: {line}", err=True)
        raise typer.Exit(code=1)
    if bounds:
        console.print(f"Every backend meets {', '.join(map(str, bounds))}.", markup=False)
