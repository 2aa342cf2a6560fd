"""Scenario 5: ``./launch.sh`` until the judge answers ``status``; memory and idle CPU.

launch.sh runs as a person runs it (no command: start Ray and the judge, print the
status, return), with its own ``RAY_TMPDIR`` and free ports so it neither finds nor
disturbs another cluster. The judge serves LiteLLM against the fake provider. Resident
memory of the judge and of each worker is read from /proc right after start-up and
again after one ``score_batch`` (which makes each worker import litellm); idle CPU is
the CPU the cluster's processes spend over a quiet window, in per cent of one core.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.cluster import API_KEY, RAY_ENV, REPO
from bench.context import Context
from bench.report import Row

SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], namespace="ray_judge", log_to_driver=False)
judge = ray.get_actor("judge")
items = [{"prompt": f"What is {i}+{i}? [s5]", "response": str(2 * i)}
         for i in range(int(sys.argv[2]))]
verdicts = ray.get(judge.score_batch.remote(items), timeout=300)
print(json.dumps({"ok": sum(v.ok for v in verdicts), "n": len(verdicts)}))
"""


def run(ctx: Context) -> None:
    fake = ctx.fake(0.05)
    work = ctx.work / "s5"
    work.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="rjl", dir="/tmp"))  # AF_UNIX paths are short
    port, dashboard = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "LLM_JUDGE_"))}
    env.update(RAY_ENV)
    env.update({"RAY_TMPDIR": str(ray_tmp), "PYTHON": sys.executable,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "LLM_JUDGE_NAME": "litellm:openai/bench-launch",
                "LLM_JUDGE_NUM_WORKERS": str(ctx.workers),
                "LLM_JUDGE_BACKEND_FILE": str(work / ".judge_backend"),
                "OPENAI_API_BASE": f"{fake.url}/v1", "OPENAI_API_KEY": API_KEY})
    launch = [str(REPO / "launch.sh"), "--port", str(port), "--dashboard-port", str(dashboard)]
    try:
        t0 = time.perf_counter()
        up = subprocess.run(launch, cwd=work, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
        startup = time.perf_counter() - t0
        if up.returncode != 0 or "Running judge" not in up.stdout:
            raise RuntimeError(f"launch.sh failed ({up.returncode}): {up.stdout[-1500:]} "
                               f"{up.stderr[-1500:]}")
        fresh = _footprint(ray_tmp, ctx.sizes.s5_idle_s)
        t1 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", SCRIPT, f"127.0.0.1:{port}",
                               str(ctx.sizes.s5_requests)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        first_batch = time.perf_counter() - t1
        if done.returncode != 0:
            raise RuntimeError(f"scoring through the launched judge failed: {done.stderr[-1500:]}")
        warm = _footprint(ray_tmp, ctx.sizes.s5_idle_s)
        t2 = time.perf_counter()
        stop = subprocess.run([*launch, "--stop"], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        stopped = time.perf_counter() - t2
    finally:
        _tidy(ray_tmp)
    ctx.report.add(Row(
        "5", "./launch.sh until the judge answers status", n=1, ok=1, wall_s=startup,
        rate=startup, unit="s", note=f"--stop took {stopped:.1f} s",
        extra={"startup_s": startup, "first_score_batch_s": first_batch, "stop_s": stopped,
               "stop_ok": stop.returncode == 0}))
    for label, fp in (("just started", fresh), (f"after {ctx.sizes.s5_requests} verdicts", warm)):
        workers = ", ".join(f"{w:.0f}" for w in fp["workers_mib"])
        ctx.report.add(Row(
            "5", f"footprint, {label}", n=len(fp["workers_mib"]) + 1,
            ok=len(fp["workers_mib"]) + 1, peak_mib=fp["cluster_mib"],
            note=f"judge {fp['judge_mib']:.0f} MiB, workers {workers} MiB; idle CPU "
                 f"{fp['idle_cpu_pct_judge_and_workers']:.1f}% of a core (judge+workers), "
                 f"{fp['idle_cpu_pct_cluster']:.1f}% (all {fp['cluster_processes']} Ray "
                 "processes; peak MiB column: their total)",
            extra=fp))


def _cluster_pids(ray_tmp: Path) -> dict[int, str]:
    marker, env_marker = str(ray_tmp), f"RAY_TMPDIR={ray_tmp}"
    found = {}
    for pid in procs.snapshot():
        line = procs.cmdline(pid)
        if marker in line or procs.environ_has(pid, env_marker):
            found[pid] = line
    return found


def _footprint(ray_tmp: Path, idle_s: float) -> dict:
    members = _cluster_pids(ray_tmp)
    judge = [p for p, c in members.items() if c.startswith("ray::Judge") and
             not c.startswith("ray::JudgeWorker")]
    workers = [p for p, c in members.items() if c.startswith("ray::JudgeWorker")]
    time.sleep(1.0)  # let the last call's work settle
    pool = judge + workers
    cpu0_pool, cpu0_all = procs.tree_cpu(pool), procs.tree_cpu(list(members))
    time.sleep(idle_s)
    cpu_pool = procs.tree_cpu(pool) - cpu0_pool
    cpu_all = procs.tree_cpu(list(members)) - cpu0_all
    return {
        "judge_mib": sum(procs.rss_mib(p) or 0 for p in judge),
        "workers_mib": [procs.rss_mib(p) or 0 for p in workers],
        "cluster_mib": sum(procs.rss_mib(p) or 0 for p in members),
        "cluster_processes": len(members),
        "idle_window_s": idle_s,
        "idle_cpu_pct_judge_and_workers": 100 * cpu_pool / idle_s,
        "idle_cpu_pct_cluster": 100 * cpu_all / idle_s,
    }


def _free_port() -> int:
    # Below Linux's ephemeral range and above Ray's default worker ports, as the tests do.
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _tidy(ray_tmp: Path) -> None:
    """Whatever launch.sh left behind (only if --stop failed): its process group."""
    state = ray_tmp / "ray" / "ray_judge_launch_head"
    if state.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(state.read_text().split()[0]), signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)
