"""Scenario 7: soak. 100,000 verdicts through the pool under the fault mix of
``tests/system/test_faults.py``, with what each process holds sampled every 10,000.

The load is a training run's: ``ray_judge.JudgeClient`` in this process, many concurrent
callers (single ``score_async`` calls and ``score_batch_async`` batches of 8), every item
with a unique id, so the end can check that each got exactly one result. The provider
is the fake (OpenAI format through the real LiteLLM backend, 20 ms). In every block of
10,000 the scenario, as the verdicts come back:

* scripts a 429 storm with Retry-After, then 500/502/503s, then hangs, dropped
  connections and malformed bodies;
* SIGKILLs worker 0 (Ray restarts it; its micro-batches go back to the judge's queue);
* switches to a second model with the real ``switch_judge_backend.py``, and back;
* with a Claude Code CLI at hand, switches to ``ccode`` (the real CLI against the fake
  Messages API), SIGKILLs one of its processes mid-call, and switches back;
* in a few blocks, kills the judge actor (``ray.kill(no_restart=False)``; the client holds
  and resubmits what was in flight).

At each block's end it records the resident memory, open file descriptors and sockets of
the judge and of each worker (its pid too: a killed process comes back as a new one),
the established connections to the provider, the live and zombie CLI processes, and the
client's counters. The verdict cache is capped at 5,000 (full after the first block),
so growth past warm-up is what the pool keeps, not what the cache is meant to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import procs
from bench.cluster import RAY_ENV, REPO, ccode_env, items, litellm_env
from bench.context import Context
from bench.report import Row, Target

MODELS = ("openai/soak-a", "openai/soak-b")
CCODE = "ccode-4-sonnet"
LATENCY_S = 0.02
BATCH = 8
CACHE_SIZE = 5000
WAIT_S = 120.0  # bound on every wait for the pool; reached only when something is broken


def run(ctx: Context) -> None:
    fake = ctx.fake(LATENCY_S)
    cluster = ctx.ray()
    env = litellm_env(fake.url, ctx.work, MODELS[0], LLM_JUDGE_NUM_WORKERS=str(ctx.workers),
                      LLM_JUDGE_TIMEOUT="3", LLM_JUDGE_DEADLINE="20",
                      LLM_JUDGE_MAX_ATTEMPTS="3", LLM_JUDGE_BACKOFF="0.2",
                      LLM_JUDGE_MAX_BACKOFF="1", LLM_JUDGE_BACKEND_TTL="1",
                      LLM_JUDGE_CACHE_SIZE=str(CACHE_SIZE))
    if ctx.cli:
        cli_env = ccode_env(fake.url, ctx.work, ctx.cli)
        env.update({k: v for k, v in cli_env.items() if k != "LLM_JUDGE_NAME"})
    cluster.start_judge(env, warm=items(max(16, 8 * ctx.workers), "s6-warm"))
    soak = Soak(ctx, cluster, fake, env)
    try:
        asyncio.run(soak.run())
    finally:
        soak.client.close()
        cluster.stop_judge()
    soak.report()


class Soak:
    def __init__(self, ctx: Context, cluster: Any, fake: Any, env: dict[str, str]) -> None:
        import ray_judge

        self.ctx, self.cluster, self.fake, self.env = ctx, cluster, fake, env
        self.ray = cluster.ray
        self.total, self.block = ctx.sizes.s7_verdicts, ctx.sizes.s7_block
        self.client = ray_judge.JudgeClient(deadline_s=ctx.sizes.s7_deadline_s)
        self.got: Counter[int] = Counter()  # id -> results received
        self.status: list[Counter[str]] = [Counter() for _ in range(self.blocks)]
        self.backends: Counter[str] = Counter()
        self.errors: list[str] = []
        self.next_id = 0
        #: Callers submit no id past this: the fault schedule moves it on, so a fast
        #: pool cannot finish before every fault has happened.
        self.allowed = 0
        self.received = 0
        self.samples: list[dict[str, Any]] = []
        self.faults: Counter[str] = Counter()
        self.first_error: dict[str, str | None] = {}
        self.started = time.perf_counter()

    @property
    def blocks(self) -> int:
        return -(-self.total // self.block)

    # -- the load ------------------------------------------------------------------------

    async def run(self) -> None:
        callers = [asyncio.ensure_future(self._caller(i))
                   for i in range(self.ctx.sizes.s7_callers)]
        sampler = asyncio.ensure_future(self._sampler())
        faults = asyncio.ensure_future(self._faults())
        await asyncio.gather(*callers)
        faults.cancel()
        await asyncio.gather(faults, return_exceptions=True)
        await sampler

    async def _caller(self, index: int) -> None:
        single = index % 2 == 0
        while self.next_id < self.total:
            if self.next_id >= self.allowed:  # a fault is due: let it happen under load
                await asyncio.sleep(0.05)
                continue
            n = 1 if single else min(BATCH, self.total - self.next_id)
            ids = list(range(self.next_id, self.next_id + n))
            self.next_id += n
            batch = [_item(i) for i in ids]
            try:
                if single:
                    out = [await self.client.score_async(**batch[0])]
                else:
                    out = await self.client.score_batch_async(batch)
            except Exception as exc:  # counted as lost at the end; there must be none
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            for i, verdict in zip(ids, out, strict=True):
                if verdict.metadata != i:
                    self.errors.append(f"item {i} got the verdict of {verdict.metadata}")
                    continue
                self.got[i] += 1
                self.status[i // self.block][verdict.status.value] += 1
                if not verdict.ok:
                    self.first_error.setdefault(verdict.status.value, verdict.error)
                self.backends[verdict.backend or "?"] += 1
            self.received += n

    async def _until(self, count: int) -> None:
        while self.received < min(count, self.total):
            await asyncio.sleep(0.05)

    # -- faults --------------------------------------------------------------------------

    async def _faults(self) -> None:
        from ray_judge.testing import Behaviour

        n = max(3, self.block // 250)  # scripted answers per fault, 40 at full size
        kill_judge = {1, self.blocks // 2, self.blocks - 2} & set(range(self.blocks))
        for b in range(self.blocks):
            steps: list[tuple[float, str, Any]] = [
                (0.1, "429 storm", lambda: self._script([Behaviour.error(
                    429, "slow down", retry_after=0.5)] * n)),
                (0.2, "5xx", lambda: self._script(
                    [Behaviour.error(s) for s in (500, 502, 503)] * (n // 3))),
                (0.3, "hang/drop/malformed", lambda: self._script([
                    Behaviour(hang=True), Behaviour(drop=True), Behaviour(malformed=True)] * 2)),
                (0.4, "worker kill", lambda: self._kill_worker(0)),
                (0.5, "switch to B", lambda: self._switch("litellm", MODELS[1])),
            ]
            if b in kill_judge:
                steps.append((0.6, "judge kill", self._kill_judge))
            if self.ctx.cli and self.ctx.sizes.s7_ccode:
                steps += [(0.7, "switch to ccode", lambda: self._switch("ccode", CCODE)),
                          (0.7, "CLI kill", lambda: self._ccode_phase(max(3, n // 4)))]
            steps.append((0.8, "switch to A", lambda: self._switch("litellm", MODELS[0])))
            if b:  # the fake records every request: forget them, so it stays small too
                await asyncio.to_thread(self.fake.reset)
            for fraction, name, action in steps:
                due = b * self.block + int(fraction * self.block)
                self.allowed = due + max(BATCH, self.block // 10)
                await self._until(due)
                if self.received >= self.total:
                    return
                self._log(f"{name}")
                if await action() is not False:
                    self.faults[name] += 1
        self.allowed = self.total

    def _log(self, what: str) -> None:
        print(f"  soak {time.perf_counter() - self.started:7.1f}s {self.received:>7} "
              f"verdicts: {what}", file=sys.stderr, flush=True)

    async def _script(self, behaviours: list[Any]) -> None:
        before = await asyncio.to_thread(self.fake.model_calls)
        await asyncio.to_thread(self.fake.script, *behaviours)
        deadline = time.monotonic() + WAIT_S
        while (await asyncio.to_thread(self.fake.model_calls) < before + len(behaviours)
               and time.monotonic() < deadline and self.received < self.total):
            self.allowed = max(self.allowed, self.next_id + BATCH)  # calls to draw them
            await asyncio.sleep(0.1)

    async def _kill_worker(self, index: int) -> bool:
        workers = await self._workers()
        os.kill(workers[index]["pid"], signal.SIGKILL)
        return True

    async def _workers(self) -> list[dict[str, Any]]:
        """The judge's workers, once all of them are alive (a killed one restarts)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            workers = await self._call("workers_info")
            if all(w.get("alive") for w in workers) or time.monotonic() > deadline:
                return workers
            await asyncio.sleep(0.5)

    async def _kill_judge(self) -> None:
        judge = self.ray.get_actor(self.client.name, namespace=self.client.namespace)
        self.ray.kill(judge, no_restart=False)

    async def _switch(self, *args: str) -> None:
        env = {**os.environ, **RAY_ENV, "RAY_ADDRESS": self.cluster.address,
               "LLM_JUDGE_BACKEND_FILE": self.env["LLM_JUDGE_BACKEND_FILE"]}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "switch_judge_backend.py"), *args, cwd=str(self.ctx.work),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"switch {args} failed: {out.decode()} {err.decode()}")

    async def _ccode_phase(self, n: int) -> bool:
        """Serve a few verdicts through the CLI, SIGKILL one CLI process mid-call."""
        before = self.backends[CCODE]
        deadline = time.monotonic() + WAIT_S
        while self.backends[CCODE] < before + n and time.monotonic() < deadline:
            if self.received >= self.total:
                return False
            self.allowed = max(self.allowed, self.next_id + BATCH)
            await asyncio.sleep(0.1)
        clis = cli_processes(self.ctx.cli)[0]
        if clis:
            os.kill(clis[0], signal.SIGKILL)
        return bool(clis)

    async def _call(self, method: str | None) -> Any:
        """A control call to the judge (None: the client's status), waiting out a restart."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if method is None:
                    return await asyncio.to_thread(self.client.status)
                judge = self.ray.get_actor(self.client.name, namespace=self.client.namespace)
                return await asyncio.wait_for(
                    asyncio.wrap_future(getattr(judge, method).remote().future()), 30)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    # -- samples -------------------------------------------------------------------------

    async def _sampler(self) -> None:
        for b in range(self.blocks):
            await self._until((b + 1) * self.block)
            sample = await self._sample(b)
            self.samples.append(sample)
            # Also here, so that a run stopped early still shows what it measured.
            self._log(f"block {b + 1}: {dict(self.status[b])}; judge "
                      f"{_brief(sample['judge'])}; workers "
                      + ", ".join(_brief(w) for w in sample["workers"])
                      + f"; {sample['provider_connections']} conns, {sample['cli_processes']} "
                      f"CLI, {sample['zombies']} zombies; client {sample['client']}")

    async def _sample(self, b: int) -> dict[str, Any]:
        status = await self._call(None)
        workers = await self._workers()
        judge_pid = status["pid"]
        worker_pids = [w["pid"] for w in workers if w.get("alive")]
        clis, zombies = cli_processes(self.ctx.cli)
        return {
            "block": b + 1, "received": self.received,
            "seconds": round(time.perf_counter() - self.started, 1),
            "judge": _proc(judge_pid),
            "workers": [_proc(pid) for pid in worker_pids],
            "caller": _proc(os.getpid()),
            "provider_connections": connections_to(self.fake.port),
            "cli_processes": len(clis), "zombies": zombies,
            "client": status["client"],
            "queued": status.get("queued"),
        }

    # -- the report ----------------------------------------------------------------------

    def report(self) -> None:
        lost_ids = [i for i in range(self.next_id) if self.got[i] == 0]
        twice = [i for i in range(self.next_id) if self.got[i] > 1]
        previous_s = 0.0
        for sample in self.samples:
            b = sample["block"] - 1
            lo, hi = b * self.block, min(self.total, (b + 1) * self.block)
            lost = sum(1 for i in lost_ids if lo <= i < hi)
            dup = sum(1 for i in twice if lo <= i < hi)
            n = hi - lo
            wall = sample["seconds"] - previous_s
            previous_s = sample["seconds"]
            judge, workers = sample["judge"], sample["workers"]
            note = (f"lost {lost}, twice {dup}; judge {judge['rss_mib']:.0f} MiB "
                    f"{judge['fds']} fds; workers "
                    + "/".join(f"{w['rss_mib']:.0f}" for w in workers) + " MiB "
                    + "/".join(str(w["fds"]) for w in workers) + " fds; "
                    f"{sample['provider_connections']} conns; "
                    f"{sample['cli_processes']} CLI, {sample['zombies']} zombies")
            self.ctx.report.add(Row(
                "7", f"soak verdicts {lo + 1}-{hi}", n=n, ok=self.status[b]["ok"],
                wall_s=wall, rate=n / wall if wall > 0 else None, unit="verdicts/s",
                peak_mib=judge["rss_mib"], note=note,
                extra={**sample, "lost": lost, "duplicated": dup,
                       "statuses": dict(self.status[b])}))
        lost = len(lost_ids) + (self.total - self.next_id)
        self.ctx.report.targets.append(Target(
            "7", f"verdicts lost or duplicated of {self.total:,}", "0",
            lost + len(twice), lost + len(twice) == 0,
            why=f"faults: {dict(self.faults)}; caller errors: {self.errors[:3]}; first error "
                f"by status: {self.first_error}"))
        for role in ("judge", "worker 0", "worker 1"):
            growth, span = memory_growth(self.samples, role)
            self.ctx.report.targets.append(Target(
                "7", f"{role} memory growth after warm-up (%)", "<= 10", growth,
                None if growth is None else growth <= 10.0,
                why=span or "no process lived through 3 samples"))


def _item(i: int) -> dict[str, Any]:
    return {"prompt": f"Soak question {i}: what is {i} + 1?", "response": f"It is {i + 1}.",
            "reference": str(i + 1), "metadata": i}


def _proc(pid: int) -> dict[str, Any]:
    fds = sockets = 0
    with contextlib.suppress(OSError):  # the process may be gone
        for fd in os.listdir(f"/proc/{pid}/fd"):
            fds += 1
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return {"pid": pid, "rss_mib": procs.rss_mib(pid) or 0.0, "fds": fds, "sockets": sockets}


def _brief(proc: dict[str, Any]) -> str:
    return (f"{proc['pid']}: {proc['rss_mib']:.0f} MiB, {proc['fds']} fds "
            f"({proc['sockets']} sockets)")


def connections_to(port: int) -> int:
    """Established TCP connections whose remote end is ``port`` on this machine."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def cli_processes(cli: str | None) -> tuple[list[int], int]:
    """Live CLI processes below this process (the bench's Ray cluster), and zombies of
    any kind below it."""
    table = procs.snapshot()
    below = procs.descendants([os.getpid()], table)
    live = []
    if cli:
        for pid in below:
            argv0 = procs.cmdline(pid).split(" ", 1)[0]
            if argv0 == cli or (argv0.endswith("/claude") and "node" not in argv0):
                live.append(pid)
    zombies = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if fields and fields[0] == "Z" and int(fields[1]) in below:
                zombies += 1
    return live, zombies


def memory_growth(samples: list[dict[str, Any]], role: str) -> tuple[float | None, str]:
    """Percent RSS growth of ``role`` over its longest life (same pid) of >= 3 samples,
    from its second sample (warm-up done) to its last."""
    def of(sample: dict[str, Any]) -> dict[str, Any] | None:
        if role == "judge":
            return sample["judge"]
        index = int(role.split()[1])
        workers = sample["workers"]
        return workers[index] if index < len(workers) else None

    runs: list[list[tuple[int, dict[str, Any]]]] = []
    for sample in samples:
        proc = of(sample)
        if proc is None:
            continue
        if runs and runs[-1][-1][1]["pid"] == proc["pid"]:
            runs[-1].append((sample["block"], proc))
        else:
            runs.append([(sample["block"], proc)])
    longest = max((r for r in runs if len(r) >= 3), key=len, default=None)
    if longest is None:
        return None, ""
    (b0, first), (b1, last) = longest[1], longest[-1]
    growth = 100.0 * (last["rss_mib"] - first["rss_mib"]) / first["rss_mib"]
    return growth, (f"pid {first['pid']}: {first['rss_mib']:.0f} MiB after block {b0}, "
                    f"{last['rss_mib']:.0f} MiB after block {b1}")
