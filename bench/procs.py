"""Counting what processes cost, from /proc: CPU seconds of process trees, resident memory.

The machine is shared, so nothing here reads machine-wide figures except the load
average (reported, never used in a ratio). CPU of a tree is the sum, over its live
processes, of their own time plus the time of children they have reaped: a ``claude``
that ran and exited inside a worker is counted in that worker's children time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cpu_s: float  # own user + system
    children_cpu_s: float  # reaped children's user + system


def snapshot() -> dict[int, Proc]:
    """Every process we can read, by pid."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        head, _, rest = raw.rpartition(")")
        fields = rest.split()
        if len(fields) < 15 or fields[0] in "ZX":
            continue
        out[int(entry)] = Proc(int(entry), int(fields[1]), head.partition("(")[2],
                               (int(fields[11]) + int(fields[12])) / TICK,
                               (int(fields[13]) + int(fields[14])) / TICK)
    return out


def descendants(roots: Iterable[int], procs: dict[int, Proc]) -> set[int]:
    """``roots`` and everything below them."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu(roots: Iterable[int], exclude: Iterable[int] = (),
             procs: dict[int, Proc] | None = None) -> float:
    """CPU seconds so far of the trees under ``roots``, less the trees under ``exclude``."""
    procs = snapshot() if procs is None else procs
    pids = descendants(roots, procs) - descendants(exclude, procs)
    # A reaped child's time sits in its parent's children time; an excluded tree's
    # reaped children are excluded with it.
    return sum(procs[p].cpu_s + procs[p].children_cpu_s for p in pids)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def environ_has(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class PeakMemory(threading.Thread):
    """Samples, every ``every`` seconds, the summed RSS of the processes under ``roots``
    that ``match`` (by comm), and keeps the peak sum, the peak count and the largest one."""

    def __init__(self, roots: Callable[[], Iterable[int]], match: Callable[[str], bool],
                 every: float = 0.1) -> None:
        super().__init__(name="peak-memory", daemon=True)
        self.roots, self.match, self.every = roots, match, every
        self.peak_sum_mib = 0.0
        self.peak_count = 0
        self.peak_one_mib = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            procs = snapshot()
            total, count = 0.0, 0
            for pid in descendants(self.roots(), procs):
                if self.match(procs[pid].comm):
                    rss = rss_mib(pid) or 0.0
                    total += rss
                    count += 1
                    self.peak_one_mib = max(self.peak_one_mib, rss)
            self.peak_sum_mib = max(self.peak_sum_mib, total)
            self.peak_count = max(self.peak_count, count)
            self._halt.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join()


def percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Stopwatch:
    """Wall time and the CPU of some process trees over a window."""

    def __init__(self, cpu: Callable[[], float]) -> None:
        self._cpu = cpu

    def __enter__(self) -> Stopwatch:
        self.cpu0, self.t0 = self._cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_s = self._cpu() - self.cpu0


def machine_busy_s() -> tuple[float, float]:
    """CPU seconds all processes of the machine have spent so far, and the seconds the
    hypervisor gave this machine's CPUs to someone else (steal), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


class Foreign:
    """How many cores other people's processes kept busy over a window: the machine's busy
    time less this process's tree (the bench, its Ray cluster, its fake providers).

    Only for windows in which no Ray worker of ours exits: the raylet reaps its workers
    without adding their CPU to its own children time, so a judge stopped inside the
    window would count as someone else's load.
    """

    def __enter__(self) -> Foreign:
        (self._busy0, self._steal0), self._ours0 = machine_busy_s(), tree_cpu([os.getpid()])
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        busy, steal = machine_busy_s()
        ours = tree_cpu([os.getpid()]) - self._ours0
        self.cores = max(0.0, busy - self._busy0 - ours) / wall if wall > 0 else 0.0
        #: cores of this VM the hypervisor ran something else on (a noisy host)
        self.steal_cores = (steal - self._steal0) / wall if wall > 0 else 0.0
