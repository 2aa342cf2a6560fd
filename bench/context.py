"""What every scenario gets: sizes, a scratch directory, fake providers, the report."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.cluster import RAY_ENV, Cluster
from bench.report import Report


class Skip(Exception):
    """A scenario that cannot run on this machine (e.g. no Claude Code CLI)."""


@dataclass
class Sizes:
    """How much each scenario does; ``smoke()`` is tiny, for a check that it works."""

    s1_requests: int = 2048  # per repetition
    s1_in_flight: tuple[int, ...] = (256, 2048)
    s1_batch: int = 256
    s1_reps: int = 2
    s1_busy: int = 1  # 1: repeat the top level with one core kept busy by a busy loop
    s2_parallel: int = 4  # CLI processes in flight: 2 x CPUs, the pool's default here
    s2_oneshot: int = 48
    s2_session: int = 400
    s3_reps: int = 3
    s3_ttl_s: float = 5.0
    s3_in_flight: int = 8
    s4_window_s: float = 60.0
    s4_rate: int = 5000
    s5_idle_s: float = 10.0
    s5_requests: int = 256
    s6_prompts: int = 64  # a GRPO step: prompts x responses per prompt
    s6_k: int = 8
    s7_verdicts: int = 100_000
    s7_block: int = 10_000  # verdicts between samples
    s7_callers: int = 256  # concurrent callers, half single calls, half batches of 8
    s7_deadline_s: float = 600.0
    s7_ccode: bool = True  # a Claude Code CLI phase per block (when a CLI is found)
    s8_prompts: int = 128  # the cost scenario's GRPO step: prompts x responses per prompt
    s8_k: int = 8
    s9_prompts: int = 64  # the tail scenario's GRPO step, and how many steps per mode
    s9_k: int = 8
    s9_steps: int = 5
    s10_requests: int = 1024  # the panel scenario's batch: all in flight at once

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(s1_requests=32, s1_in_flight=(8,), s1_batch=8, s1_reps=1, s1_busy=0,
                   s2_parallel=2,
                   s2_oneshot=2, s2_session=4, s3_reps=1, s3_ttl_s=1.0, s3_in_flight=2,
                   s4_window_s=1.0, s5_idle_s=0.5, s5_requests=4, s6_prompts=4, s6_k=4,
                   s7_verdicts=300, s7_block=100, s7_callers=8, s7_ccode=False,
                   s8_prompts=2, s8_k=4, s9_prompts=4, s9_k=4, s9_steps=2,
                   s10_requests=16)


@dataclass
class Context:
    work: Path
    sizes: Sizes
    report: Report
    cli: str | None
    workers: int
    profile_dir: Path | None = None
    cluster: Cluster | None = None
    _fakes: dict[float, Any] = field(default_factory=dict)

    def fake(self, latency_s: float) -> Any:
        """A fake provider process answering after ``latency_s`` (one per latency)."""
        from ray_judge.testing import FakeLLMProcess

        if latency_s not in self._fakes:
            env = {**os.environ, **RAY_ENV}
            self._fakes[latency_s] = FakeLLMProcess(latency_s=latency_s, env=env).start()
        return self._fakes[latency_s]

    @property
    def fake_pids(self) -> list[int]:
        return [f.pid for f in self._fakes.values() if f.pid is not None]

    def fake_cpu(self) -> float:
        return procs.tree_cpu(self.fake_pids)

    def ray(self) -> Cluster:
        if self.cluster is None:
            self.cluster = Cluster(self.work / "ray")
        return self.cluster

    def pool_cpu(self) -> float:
        """CPU so far of this process and what it started, less the fake providers."""
        return procs.tree_cpu([os.getpid()], self.fake_pids)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        for fake in self._fakes.values():
            fake.stop()
        self._fakes.clear()

    @contextmanager
    def profile(self, name: str, pids: list[int]) -> Iterator[None]:
        """py-spy on ``pids`` for the block, when ``--profile`` asked for it."""
        if self.profile_dir is None:
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        beside = Path(sys.executable).parent / "py-spy"  # a venv's, when not on PATH
        spy_exe = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        if spy_exe is None:
            raise Skip("--profile needs py-spy (pip install py-spy)")
        spies = []
        for pid in pids:
            out = self.profile_dir / f"{name}-{pid}.txt"
            spies.append((pid, out, subprocess.Popen(
                [spy_exe, "record", "--pid", str(pid), "--rate", "100", "--nonblocking",
                 "--full-filenames",
                 "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            for _, _, spy in spies:
                spy.send_signal(signal.SIGINT)
            for _, _, spy in spies:
                try:
                    spy.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
