"""The entry point: ``python -m bench`` (or ``python bench/run.py``).

    python -m bench                      # scenarios 1-6, full size (~10 min on 2 cores)
    python -m bench --smoke --json o.json   # tiny sizes: does the harness work?
    python -m bench --only 1,2 --profile prof/   # some scenarios, with py-spy profiles
    python -m bench --only 7             # the soak (only when named): 100,000 verdicts

Prints a table and, with ``--json``, writes the same figures as JSON. A full-size run
replaces the table of each scenario it measured in bench/RESULTS.md (``--results``);
``--smoke`` and ``--profile`` runs, skipped and failed scenarios leave it alone. The load average
of the machine is recorded before and after: the machines are shared, so only ratios
to a baseline measured in the same run mean much.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``ray_judge`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs
from bench.cluster import find_cli, prepare_env
from bench.context import Context, Sizes, Skip
from bench.report import Report, replace_tables

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

#: Scenario -> module, in the order they run: 4 and 5 before the bench's own Ray cluster
#: exists (5 starts another through launch.sh), 3 right after 1, whose judge it switches.
SCENARIOS = {
    "4": "bench.s4_override",
    "5": "bench.s5_launch",
    "2": "bench.s2_ccode",
    "1": "bench.s1_litellm",
    "3": "bench.s3_switch",
    "6": "bench.s6_groups",
    "7": "bench.s7_soak",
    "8": "bench.s8_cost",
    "9": "bench.s9_tail",
    "10": "bench.s10_panels",
}
OPT_IN = {"7"}
NAMES = {"1": "LiteLLM path", "2": "Claude Code path", "3": "switch latency",
         "4": "override file cost", "5": "start-up and footprint",
         "6": "GRPO step, pointwise vs grouped", "7": "soak",
         "8": "cost of a GRPO step, prompt caching off and on",
         "9": "GRPO steps against a heavy latency tail, hedging off and on",
         "10": "a judge panel of three against a single judge"}


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check it works")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results here")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. 1,3")
    parser.add_argument("--claude", help="the Claude Code CLI (default: CLAUDE_CLI_PATH, "
                        ".ci/node, PATH)")
    parser.add_argument("--workers", type=int, default=0,
                        help="judge workers (default: the pool's own default)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record py-spy profiles of the judge and workers into DIR")
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="FILE",
                        help="the Markdown file whose scenario tables this run replaces "
                        "(default: bench/RESULTS.md; not written by --smoke or --profile)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a size, e.g. --set s1_in_flight=256 (see Sizes)")
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.smoke() if args.smoke else Sizes()
    for item in args.set:
        name, _, raw = item.partition("=")
        if not hasattr(sizes, name):
            raise SystemExit(f"--set: no size named {name!r}; see bench/context.py Sizes")
        current = getattr(sizes, name)
        if isinstance(current, tuple):
            value: object = tuple(int(x) for x in raw.split(","))
        else:
            value = type(current)(raw)
        setattr(sizes, name, value)
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    prepare_env()
    from ray_judge.config import JudgeConfig

    only = args.only.split(",") if args.only else []
    # The soak takes many minutes even at full speed: it runs when named, never by default.
    chosen = [s for s in SCENARIOS if s in only or (not only and s not in OPT_IN)]
    workers = args.workers or JudgeConfig.from_env({}).num_workers
    report = Report(meta={
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *(argv or sys.argv[1:])]),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": args.smoke, "cpus": os.cpu_count(), "load_before": procs.load(),
        "python": platform.python_version(), "platform": platform.platform(),
        "workers": workers, "scenarios": chosen, "versions": _versions(),
        "profiled": args.profile is not None,
    })
    work = Path(tempfile.mkdtemp(prefix="ray_judge_bench_"))
    sizes = _sizes(args)
    report.meta["sizes"] = dataclasses.asdict(sizes)
    ctx = Context(work=work, sizes=sizes, report=report,
                  cli=find_cli(args.claude), workers=workers, profile_dir=args.profile)
    report.meta["claude_cli"] = ctx.cli
    started = time.perf_counter()
    try:
        for key in chosen:
            name = f"{key}: {NAMES[key]}"
            print(f"== scenario {name} (load {procs.load()})", file=sys.stderr, flush=True)
            report.meta[f"load_at_{key}"] = procs.load()
            t0 = time.perf_counter()
            try:
                __import__(SCENARIOS[key], fromlist=["run"]).run(ctx)
            except Skip as exc:
                report.skipped[name] = str(exc)
            except Exception as exc:  # one broken scenario must not hide the others
                traceback.print_exc()
                report.errors[name] = f"{type(exc).__name__}: {exc}"
            report.meta[f"seconds_{key}"] = round(time.perf_counter() - t0, 1)
    finally:
        ctx.close()
        shutil.rmtree(work, ignore_errors=True)
    report.meta["load_after"] = procs.load()
    report.meta["seconds"] = round(time.perf_counter() - started, 1)
    print(report.table())
    print(f"\nload average before {report.meta['load_before']}, after "
          f"{report.meta['load_after']} (the bench's own processes included); "
          f"{report.meta['cpus']} CPUs; {report.meta['seconds']} s. 'other processes' in a "
          "note: cores other people's processes kept busy during that measurement")
    if args.json:
        report.write(args.json)
    if not args.smoke and args.profile is None and args.results.exists():
        _write_results(args.results, report, chosen)
    return 1 if report.errors else 0


def _write_results(path: Path, report: Report, chosen: list[str]) -> None:
    """Replace the tables of the scenarios this run measured; the others stay as they are.
    Profiled or smoke-sized figures would mislead, so those runs never get here."""
    failed = {name.split(":", 1)[0] for name in (*report.skipped, *report.errors)}
    measured = {key for key in chosen if key not in failed
                and any(row.scenario == key for row in report.rows)}
    tables = {key: report.markdown(key) for key in measured}
    path.write_text(replace_tables(path.read_text(encoding="utf-8"), tables), encoding="utf-8")
    print(f"{path}: replaced the tables of scenario(s) {', '.join(sorted(measured)) or 'none'}")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("ray", "litellm", "ray_judge"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
