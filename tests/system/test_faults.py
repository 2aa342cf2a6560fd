"""Fault injection: one long scenario through the real judge on a real Ray cluster.

A client thread keeps the judge busy with ``score`` and ``score_batch`` calls (every item
carries a unique id) while the scenario, phase by phase, makes the world misbehave:

* the provider (:class:`FakeLLMServer`, OpenAI format, through the real LiteLLM backend)
  answers a storm of 429s with Retry-After, 500s and 503s, hangs, drops connections and
  sends a malformed body;
* a worker actor is SIGKILLed twice, the judge actor once (Ray restarts it; the calls it
  held fail at the caller, which resubmits them once the judge answers again);
* the override file is corrupted with garbage bytes and then fixed;
* three switches with the real ``switch_judge_backend.py`` (one of them to the real
  Claude Code CLI, pointed at a fake Messages API, whose process is SIGKILLed mid-call);
* a usage limit on the primary (Anthropic format, unified rate-limit headers) fails over
  to ``LLM_JUDGE_FALLBACK``, and a half-open probe brings the primary back.

Then it checks what a training run relies on: every request got exactly one Verdict,
within its deadline, with attempts within the maximum, a score exactly when ok; the
judge's counters and metrics add up; no CLI process and no zombie is left.
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import waiting
from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")
parser = pytest.importorskip("prometheus_client.parser")

import ray_judge  # noqa: E402
from ray_judge import Status, Verdict  # noqa: E402
from ray_judge.testing import Behaviour, FakeLLMServer  # noqa: E402
from tests.ccode_support import real_cli  # noqa: E402
from tests.cli_support import CLI  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# Short enough that hangs cost seconds, long enough for a real `claude` on a loaded box.
TIMEOUT_S = 6.0
DEADLINE_S = 15.0
MAX_ATTEMPTS = 3
# On top of the deadline a request may also wait, at the caller, for: its turn in the
# judge's queue (the CLI phase runs two at a time), a Ray round trip, a killed worker's
# restart plus its litellm import (seconds of CPU; prepare() runs outside the attempt's
# timeout by design), and the backend's own kill-and-reap grace (<= 5 s). On two cores
# shared with other test runs that adds up to tens of seconds: 30 s is generous, while a
# request that retried without a deadline would still blow through it.
SLACK_S = 30.0
#: Requests the scenario runs at least (scale this, not the phases).
MIN_REQUESTS = 1500
WAIT_S = 90.0  # bound on every poll; reached only when something is broken

MODEL_A, MODEL_B = "openai/judge-a", "openai/judge-b"
PRIMARY, FALLBACK = "anthropic/judge-primary", "openai/judge-fallback"
SPEC_A, SPEC_B = f"litellm:{MODEL_A}", f"litellm:{MODEL_B}"
SPEC_PRIMARY, SPEC_FALLBACK = f"litellm:{PRIMARY}", f"litellm:{FALLBACK}"
CCODE = "ccode-4-haiku"
#: In the CLI's environment (ANTHROPIC_* is passed through), so our CLI processes are
#: told apart from anyone else's on this shared machine.
MARKER = f"sk-ant-faults-{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------ helpers


wait_for = functools.partial(waiting.wait_for, timeout=WAIT_S, every=0.1)


@dataclass
class Call:
    ids: list[int]
    ref: Any
    submitted: float
    resubmission: bool
    done: float | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    error: BaseException | None = None


class Client(threading.Thread):
    """A training run's scoring loop: keeps ``target`` calls in flight (``score`` and
    ``score_batch`` alternately), and resubmits the items of a call that failed because
    the judge actor died, once the judge answers again."""

    BATCH = 8

    def __init__(self, judge: Any) -> None:
        super().__init__(name="faults-client", daemon=True)
        self.judge = judge
        self.target = 0
        self.calls: list[Call] = []
        self.items: dict[int, dict[str, Any]] = {}
        self.resubmitted: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.crashed: BaseException | None = None
        self._extra: queue.Queue[tuple[list[int], bool]] = queue.Queue()
        self._pending: dict[Any, Call] = {}
        self._judge_down = False

    # -- what the scenario calls ---------------------------------------------------

    def new_items(self, n: int, *, repeats: bool = True) -> list[int]:
        """``n`` new items. With ``repeats``, every 16th repeats the previous one's text:
        identical requests in flight share one backend call, and must still get one
        Verdict each. A phase that counts the calls reaching the provider asks for none
        (a repeat is answered by the cache or by the call it shares: one call fewer)."""
        with self.lock:
            start = len(self.items)
            for i in range(start, start + n):
                text = f"answer-{i - 1 if repeats and i % 16 == 0 and i else i:06d}"
                self.items[i] = {"prompt": "What is 2+2?", "response": text,
                                 "reference": "4", "metadata": i}
            return list(range(start, start + n))

    def submit(self, ids: list[int]) -> None:
        """Queue one explicit call (a single id: ``score``; several: ``score_batch``)."""
        self._extra.put((ids, False))

    def pending(self) -> int:
        with self.lock:
            return len(self._pending) + self._extra.qsize()

    def served(self, backend: str | None = None, after: float = 0.0) -> int:
        with self.lock:
            return sum(1 for c in self.calls for v in c.verdicts
                       if c.done and c.submitted > after and (backend in (None, v.backend)))

    def settled(self, before: float) -> bool:
        """Every call submitted before ``before`` has come back."""
        with self.lock:
            return all(c.done or c.error for c in self.calls if c.submitted < before)

    def describe(self) -> str:
        with self.lock:
            pending = [(c.ids, c.resubmission) for c in self._pending.values()]
            errors = [(c.ids, repr(c.error)[:200]) for c in self.calls if c.error][-5:]
        return (f"(client: judge down {self._judge_down}, pending {pending}, queued "
                f"{self._extra.qsize()}, resubmitted {dict(self.resubmitted)}, errors {errors})")

    def stop(self) -> None:
        self.target = 0
        self.halt.set()
        self.join(timeout=WAIT_S * 2)
        assert not self.is_alive(), "the client did not drain"
        assert self.crashed is None, f"the client crashed: {self.crashed!r}"

    # -- the loop ------------------------------------------------------------------

    def _send(self, ids: list[int], resubmission: bool) -> None:
        if len(ids) == 1:
            item = self.items[ids[0]]
            ref = self.judge.score.remote(item["prompt"], item["response"],
                                          reference=item["reference"], metadata=ids[0])
        else:
            ref = self.judge.score_batch.remote([self.items[i] for i in ids])
        call = Call(ids, ref, time.monotonic(), resubmission)
        with self.lock:
            self.calls.append(call)
            self._pending[ref] = call

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.crashed = exc

    def _loop(self) -> None:
        seq = 0
        while not (self.halt.is_set() and not self._pending and self._extra.empty()):
            if self._judge_down and self.halt.is_set():
                return  # stopped (or failed) while the judge was down: nobody waits
            if self._judge_down:
                self._judge_down = not self._answers()
                continue
            while not self._extra.empty():
                self._send(*self._extra.get())
            while not self.halt.is_set() and len(self._pending) < self.target:
                self._send(self.new_items(1 if seq % 2 == 0 else self.BATCH), False)
                seq += 1
            if not self._pending:
                time.sleep(0.02)
                continue
            ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending),
                                timeout=0.05, fetch_local=True)
            for ref in ready:
                self._collect(ref)

    def _collect(self, ref: Any) -> None:
        with self.lock:
            call = self._pending.pop(ref)
        try:
            out = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            # The judge died with this call. Its verdict was never delivered: the caller's
            # policy is to ask again, once the restarted judge answers.
            call.error = exc
            self._judge_down = True
            for i in call.ids:
                self.resubmitted[i] += 1
            self._extra.put((call.ids, True))
            return
        except Exception as exc:  # judged at the end: no other call may fail
            call.error = exc
            return
        with self.lock:
            call.verdicts = [out] if isinstance(out, Verdict) else list(out)
            call.done = time.monotonic()

    def _answers(self) -> bool:
        try:
            return ray.get(self.judge.ping.remote(), timeout=2) == "pong"
        except ray.exceptions.RayError:
            time.sleep(0.2)
            return False


def switch_cli(*args: str, backend_file: Path) -> str:
    env = {**os.environ, "LLM_JUDGE_BACKEND_FILE": str(backend_file),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    out = subprocess.run([sys.executable, str(REPO / "switch_judge_backend.py"), *args],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def consume(server: FakeLLMServer, *behaviours: Behaviour) -> None:
    """Script ``behaviours`` and wait until the load has drawn every one of them."""
    before = server.model_calls
    server.script(*behaviours)
    wait_for(lambda: server.model_calls >= before + len(behaviours),
             f"{len(behaviours)} scripted answers to be used")


def status(judge: Any) -> dict[str, Any]:
    return ray.get(judge.status.remote(), timeout=30)


def in_flight(judge: Any) -> int:
    return sum(status(judge)["in_flight"].values())


def alive_workers(judge: Any) -> list[dict[str, Any]] | None:
    workers = ray.get(judge.workers_info.remote(), timeout=30)
    return workers if all(w["alive"] for w in workers) else None


def kill_a_worker(judge: Any, client: Client, index: int) -> int:
    before = wait_for(lambda: alive_workers(judge), "all workers alive")
    wait_for(lambda: in_flight(judge) > 0, "requests in flight", every=0.02)
    os.kill(before[index]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    after = wait_for(lambda: alive_workers(judge), "the killed worker to restart", every=0.5)
    assert after[index]["pid"] != before[index]["pid"]
    wait_for(lambda: client.served(after=killed) >= 100, "load after the worker kill")
    return before[index]["pid"]


# -------------------------------------------------------------------------- /proc scans


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def proc_table() -> dict[int, tuple[int, str]]:
    """``{pid: (ppid, state)}`` of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat").decode(errors="replace")
            # "pid (comm) state ppid ..."; comm may hold spaces and parentheses
            fields = stat.rpartition(")")[2].split()
            if len(fields) >= 2:
                out[int(entry)] = (int(fields[1]), fields[0])
    return out


def our_cli_processes() -> list[int]:
    """Live CLI processes started for this module (any parent: orphans count too)."""
    assert CLI is not None
    found = []
    for pid in proc_table():
        argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
        if argv and argv[0] == CLI.encode() and MARKER.encode() in _read(
                f"/proc/{pid}/environ"):
            found.append(pid)
    return found


def zombies_below(root: int) -> list[int]:
    table = proc_table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if table[child][1] == "Z":
                out.append(child)
    return out


def judge_requests_total() -> dict[tuple[str, ...], float]:
    """``ray_judge_requests_total`` by reporter (the labels other than backend/status)."""
    port = ray.nodes()[0]["MetricsExportPort"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for family in parser.text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "ray_judge_requests_total":
                reporter = tuple(sorted(f"{k}={v}" for k, v in sample.labels.items()
                                        if k not in ("backend", "status")))
                out[reporter] += sample.value
    return dict(out)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    context = init_local(_system_config={"metrics_report_interval_ms": 1000})
    yield Path(context.address_info["session_dir"])
    ray.shutdown()


@pytest.fixture(scope="module")
def servers():
    # One fake per provider route, so each phase scripts only the backend it is about.
    with FakeLLMServer(latency_s=0.02) as openai, FakeLLMServer() as anthropic, \
            FakeLLMServer() as messages:
        yield openai, anthropic, messages


# --------------------------------------------------------------------------- the scenario


@real_cli
def test_thousands_of_requests_through_every_fault(cluster, servers, tmp_path) -> None:
    openai, anthropic, messages = servers
    backend_file = tmp_path / ".judge_backend"
    env = {
        "LLM_JUDGE_NAME": SPEC_A,
        "LLM_JUDGE_BACKEND_FILE": str(backend_file),
        "LLM_JUDGE_BACKEND_TTL": "1",
        "LLM_JUDGE_NUM_WORKERS": "2",
        # Every provider call is counted across switches here: no re-judging after a
        # switch (that has its own tests in test_shift_pool.py).
        "LLM_JUDGE_RESERVOIR_SIZE": "0",
        "LLM_JUDGE_TIMEOUT": str(TIMEOUT_S),
        "LLM_JUDGE_DEADLINE": str(DEADLINE_S),
        "LLM_JUDGE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "LLM_JUDGE_BACKOFF": "0.05",
        "LLM_JUDGE_MAX_BACKOFF": "0.5",
        "LLM_JUDGE_FALLBACK": SPEC_FALLBACK,
        "LLM_JUDGE_PROBE_INTERVAL": "2",
        # A 429 storm is weathered with retries here, not failed over.
        "LLM_JUDGE_FAILOVER_RATE_LIMITED": "1000000",
        # A hang costs its timeout and a retry here: a hedge would answer it sooner (and
        # take the next scripted fault); hedged calls have their own tests.
        "LLM_JUDGE_HEDGE": "off",
        # Nor canaries: a background canary call would draw a scripted fault (a hang)
        # meant for a caller's request (tests/pool/test_quality_pool.py has them).
        "LLM_JUDGE_CANARY_SHARE": "0",
        "LLM_JUDGE_MAX_IN_FLIGHT_CCODE": "2",
        "CLAUDE_CLI_PATH": CLI,
        "ANTHROPIC_BASE_URL": messages.url,  # the CLI
        "ANTHROPIC_API_BASE": anthropic.url,  # LiteLLM's anthropic/ route
        "ANTHROPIC_API_KEY": MARKER,
        "OPENAI_API_BASE": f"{openai.url}/v1",
        "OPENAI_API_KEY": "sk-faults-dummy-openai-key",
        "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    judge = ray_judge.start_judge(env=env)
    client = Client(judge)
    started = time.monotonic()
    phases: dict[str, float] = {}
    killed: dict[str, Any] = {}
    try:
        # Both workers import litellm before the load starts.
        warm = ray.get(judge.score_batch.remote(
            [{"prompt": "warm", "response": str(i)} for i in range(8)]), timeout=180)
        assert all(v.ok for v in warm), warm
        client.target = 8
        client.start()
        wait_for(lambda: client.served(SPEC_A) >= 150, "load on judge-a")

        # Each fault in turn; the calls it hit finish before the next one, so a retry
        # meets the default answer rather than the next fault's script.
        for name, behaviours in [
            ("429 storm", [Behaviour.error(429, "slow down", retry_after=0.3)] * 60),
            ("500/503", [Behaviour.error(500, "boom"), Behaviour.error(503, "busy")] * 12),
            ("hangs", [Behaviour.hang()] * 3),
            ("drops + malformed", [Behaviour.drop(), Behaviour.malformed()] * 8),
        ]:
            phases[name] = time.monotonic()
            consume(openai, *behaviours)
            hit = time.monotonic()
            wait_for(lambda: client.settled(before=hit), f"the calls hit by {name}")

        phases["worker kill 1"] = time.monotonic()
        killed["worker 1"] = kill_a_worker(judge, client, 0)

        phases["switch 1"] = time.monotonic()
        out = switch_cli("litellm", MODEL_B, backend_file=backend_file)
        assert f"Running judge notified: it now serves {SPEC_B} (source: file)" in out, out
        wait_for(lambda: client.served(SPEC_B, after=phases["switch 1"]) >= 100, "judge-b")

        phases["override corrupted"] = time.monotonic()
        backend_file.write_bytes(b"\x00\xff\xfegarbage\x1b[31m\nlitellm:openai/evil x\n")
        refreshed = ray.get(judge.refresh_backend.remote(), timeout=30)
        assert refreshed["backend"] == SPEC_B and refreshed["problem"], refreshed
        assert "not UTF-8" in status(judge)["override_problem"]
        wait_for(lambda: client.served(after=phases["override corrupted"]) >= 100,
                 "load with a corrupted override file")
        phases["override fixed"] = time.monotonic()
        backend_file.write_text(f"{SPEC_B}\n")  # a person fixes it with an editor
        wait_for(lambda: status(judge)["override_problem"] is None, "the fix read (TTL 1 s)")

        phases["worker kill 2"] = time.monotonic()
        killed["worker 2"] = kill_a_worker(judge, client, 1)

        # The judge dies with calls in flight: three held at the provider for 30 s.
        phases["judge kill"] = time.monotonic()
        client.target = 0
        wait_for(lambda: client.pending() == 0, "the load to drain")
        old = status(judge)
        held = client.new_items(3, repeats=False)
        before = openai.model_calls
        openai.script(*[Behaviour.ok(delay_s=30)] * 3)
        for i in held:
            client.submit([i])
        wait_for(lambda: openai.model_calls >= before + 3 and in_flight(judge) == 3,
                 "three calls held at the provider", details=lambda: (
                     f"(provider calls +{openai.model_calls - before}, judge in flight "
                     f"{in_flight(judge)}, items {held})"))
        killed_at = time.monotonic()
        ray.kill(judge, no_restart=False)
        wait_for(lambda: not client._judge_down and client.pending() == 0,
                 "the held calls to be answered", details=client.describe)
        new = status(judge)
        assert new["pid"] != old["pid"] and new["total"] == 3, (old["pid"], new)
        assert (new["backend"], new["source"]) == (SPEC_B, "file")
        # Ray fails the calls the dead judge held; the client asked again.
        assert client.resubmitted and set(client.resubmitted) <= set(held), client.describe()
        client.target = 8
        wait_for(lambda: client.served(after=killed_at) >= 150, "load after the restart")

        # The CLI, SIGKILLed mid-call by someone else (the OOM killer, a person).
        phases["switch 2 (ccode)"] = time.monotonic()
        client.target = 0
        wait_for(lambda: client.pending() == 0, "the load to drain")
        out = switch_cli("ccode", CCODE, backend_file=backend_file)
        assert f"it now serves {CCODE}" in out, out
        workers = {w["pid"] for w in wait_for(lambda: alive_workers(judge), "workers")}
        messages.script(Behaviour.ok(delay_s=60))
        [victim] = client.new_items(1, repeats=False)
        client.submit([victim])
        wait_for(lambda: messages.model_calls >= 1, "the CLI to reach the provider",
                 every=0.02)
        [cli_pid] = our_cli_processes()
        assert proc_table()[cli_pid][0] in workers  # a child of a judge worker
        os.kill(cli_pid, signal.SIGKILL)
        killed["cli"] = cli_pid
        rest = client.new_items(3, repeats=False)
        client.submit(rest)
        wait_for(lambda: client.pending() == 0, "the CLI requests", details=client.describe)
        by_id = {v.metadata: v for c in client.calls for v in c.verdicts}
        assert by_id[victim].ok and by_id[victim].attempts == 2, by_id[victim]
        assert {by_id[i].backend for i in [victim, *rest]} == {CCODE}
        assert all(by_id[i].ok for i in rest), [by_id[i] for i in rest]

        # A subscription usage limit on the primary: fail over, probe, come back.
        phases["switch 3 + usage limit"] = time.monotonic()
        anthropic.default = Behaviour.usage_limit(int(time.time()) + 8)
        out = switch_cli("litellm", PRIMARY, backend_file=backend_file)
        assert f"it now serves {SPEC_PRIMARY}" in out, out
        client.target = 8
        wait_for(lambda: status(judge)["failover"]["failovers"] >= 1, "the failover")
        wait_for(lambda: client.served(SPEC_FALLBACK) >= 100, "load on the fallback")
        phases["primary back"] = time.monotonic()
        anthropic.default = Behaviour.ok()
        wait_for(lambda: client.served(SPEC_PRIMARY, after=phases["primary back"]) >= 100,
                 "the primary to serve again after a successful probe")

        # More volume until the count is reached (scale the count, not the phases).
        wait_for(lambda: len(client.items) >= MIN_REQUESTS, "the request count", timeout=300)
        client.stop()
        final = status(judge)
    finally:
        client.halt.set()
        ray_judge.stop_judge()
    elapsed = time.monotonic() - started

    failed = [c for c in client.calls if c.error is not None]
    served = [(c, v) for c in client.calls if c.error is None for v in c.verdicts]
    waits = [c.done - c.submitted for c in client.calls if c.error is None and c.done]
    statuses = Counter(v.status.value for _, v in served)
    backends = Counter(v.backend for _, v in served)
    retried = sum(1 for _, v in served if v.attempts > 1)
    print("\nfault scenario:", {
        "requests": len(client.items), "calls": len(client.calls),
        "verdicts by status": dict(statuses), "verdicts by backend": dict(backends),
        "retried": retried, "resubmitted after judge restart": len(client.resubmitted),
        "failovers": final["failover"]["failovers"], "killed": killed,
        "failures": {v.status.value: (v.backend, v.attempts, round(v.latency_s, 1),
                                      (v.error or "")[:120]) for _, v in served if not v.ok},
        "longest wait s": round(max(waits), 2), "elapsed s": round(elapsed, 1),
        "phases (s from start)": {k: round(t - started, 1) for k, t in phases.items()},
    })

    # -- every logical request: exactly one Verdict, well formed, in time ------------
    assert all(isinstance(c.error, ray.exceptions.RayActorError) for c in failed), failed
    for call in client.calls:
        if call.error is None:
            assert [v.metadata for v in call.verdicts] == call.ids, call
    got = Counter(v.metadata for _, v in served)
    assert set(got) == set(client.items) and set(got.values()) == {1}, "lost or doubled"
    assert {i for c in failed for i in c.ids} == set(client.resubmitted)
    for _, v in served:
        assert (v.score is not None) == (v.status is Status.OK), v
        assert v.score is None or 0.0 <= v.score <= 1.0
        assert v.attempts <= MAX_ATTEMPTS, v
        assert v.cached or v.attempts >= 1, v
    assert max(waits) <= DEADLINE_S + SLACK_S, max(waits)
    # The faults really happened and were retried, not just scripted.
    assert retried >= 30 and statuses["ok"] >= 0.9 * len(served), statuses
    hung = [v for _, v in served if v.latency_s >= TIMEOUT_S and v.backend == SPEC_A]
    assert len(hung) >= 3 and all(v.ok and v.attempts == 2 for v in hung), hung
    assert backends[SPEC_FALLBACK] >= 100 and backends[SPEC_PRIMARY] >= 100, backends

    # -- the restarted judge's books match what it served ----------------------------
    # The old judge was drained but for the held calls, which cannot have finished
    # there: every call answered after the kill was answered by the restarted judge.
    after_restart = [v for c, v in served if c.done > killed_at]
    assert final["total"] == len(after_restart), (final["total"], len(after_restart))
    assert sum(n for b in final["counts"].values() for n in b.values()) == final["total"]
    for backend, counts in final["counts"].items():
        assert counts == dict(Counter(v.status.value for v in after_restart
                                      if v.backend == backend)), backend
    assert final["failover"]["failovers"] >= 1
    assert final["failover"]["serving"] == SPEC_PRIMARY and not final["failover"]["open"]
    # The metrics endpoint: one reporter per judge process (the dead one keeps its last
    # value); together they count every verdict either judge delivered.
    delivered = old["total"] + final["total"]

    def caught_up() -> dict[tuple[str, ...], float] | None:
        totals = judge_requests_total()
        return totals if sum(totals.values()) >= delivered else None

    metrics = wait_for(caught_up, "the metrics to catch up")
    assert final["total"] in metrics.values(), metrics
    assert sum(metrics.values()) == delivered, (metrics, old["total"], final["total"])

    # -- nothing left behind ----------------------------------------------------------
    wait_for(lambda: not our_cli_processes(), "no CLI process left")
    wait_for(lambda: not zombies_below(os.getpid()), "no zombie below this test", timeout=30)


# ------------------------------------------------------- a worker dying under the CLI

_WORKER = """
import asyncio, os, sys
from ray_judge.backends import create_backend
from ray_judge.config import JudgeConfig
from ray_judge.judging.runner import JudgeRunner
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest

config = JudgeConfig.from_env(os.environ)
asyncio.run(JudgeRunner(create_backend(BackendSpec.ccode(), config)).judge(JudgeRequest("p", "r")))
"""


@real_cli
@pytest.mark.parametrize("mode", ["oneshot", "session"])
def test_no_claude_outlives_a_worker_killed_mid_call(tmp_path, mode) -> None:
    with FakeLLMServer() as provider:
        provider.default = Behaviour.hang()
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
               "ANTHROPIC_API_KEY": MARKER, "ANTHROPIC_BASE_URL": provider.url,
               "CLAUDE_CLI_PATH": CLI, "LLM_JUDGE_CCODE_MODE": mode,
               "LLM_JUDGE_TIMEOUT": "300"}
        worker = subprocess.Popen([sys.executable, "-c", _WORKER], env=env)
        try:
            wait_for(lambda: provider.model_calls >= 1, "the CLI to reach the provider")
            [cli] = our_cli_processes()
            assert proc_table()[cli][0] == worker.pid
            worker.kill()
            worker.wait(timeout=30)
            wait_for(lambda: cli not in our_cli_processes(), "the orphaned CLI to exit",
                     timeout=5)
        finally:
            worker.kill()
            for pid in our_cli_processes():  # do not leave the orphan to the machine
                os.kill(pid, signal.SIGKILL)
