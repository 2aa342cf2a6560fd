"""Scenario 4: reads of the override file per minute at 5,000 resolutions per second.

A :class:`~ray_judge.selection.resolver.BackendResolver` with the default TTL (5 s) is asked for
the backend 5,000 times a second, paced in real time, for a window (60 s at full size).
Reads are counted twice: by the resolver's own counter, and by a reader that wraps
:func:`~ray_judge.selection.override_file.read_override` and counts the calls that reach the file
system. Target: <= 13 per minute (one at start, then one per TTL).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.context import Context
from bench.report import Row, Target

TTL_S = 5.0


def run(ctx: Context) -> None:
    from ray_judge.config import JudgeConfig
    from ray_judge.selection.override_file import read_override, write_override
    from ray_judge.selection.resolver import BackendResolver
    from ray_judge.spec import BackendSpec

    path = ctx.work / "s4" / ".judge_backend"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_override(path, BackendSpec.parse("litellm:openai/bench"))
    fs_reads = 0

    def counting_reader(p: Path) -> bytes:
        nonlocal fs_reads
        fs_reads += 1
        return read_override(p)

    resolver = BackendResolver(JudgeConfig(backend_file=path, ttl_s=TTL_S),
                               reader=counting_reader)
    rate, window = ctx.sizes.s4_rate, ctx.sizes.s4_window_s
    done = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < window:
        due = min(int(elapsed * rate) + 1, int(window * rate))
        while done < due:
            resolver.resolve()
            done += 1
        time.sleep(0.001)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    per_minute = resolver.reads * 60.0 / wall
    ctx.report.add(Row(
        "4", f"override file reads, {rate} resolutions/s, TTL {TTL_S:g} s", n=done, ok=done,
        wall_s=wall, rate=per_minute, unit="reads/min", cpu_s_per_req=cpu / done,
        note=f"{resolver.reads} reads in {wall:.0f} s; CPU-s/req is per resolution",
        extra={"resolutions_per_s": done / wall, "resolver_reads": resolver.reads,
               "file_system_reads": fs_reads, "window_s": wall,
               "us_cpu_per_resolution": cpu / done * 1e6, "pid": os.getpid(),
               "note": "rate column: reads per minute (resolver counter, scaled to 60 s); "
                       "CPU-s/req: per resolution, pacing loop included"}))
    judged = wall >= 60.0  # one read at start, one per TTL: a shorter window says little
    ctx.report.targets.append(Target(
        "4", "override file reads per minute at 5,000 resolutions/s", "<= 13",
        per_minute if judged else None, (per_minute <= 13) if judged else None,
        "" if judged else f"window of {wall:.1f} s is under a minute: not judged"))
