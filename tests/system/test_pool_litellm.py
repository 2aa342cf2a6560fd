"""The pool with the real LiteLLM backend against the fake provider on 127.0.0.1.

Switching under load (notified at once, and by the file's TTL alone), a worker and the
judge itself killed mid-load, and the planted API key kept out of everything a person or
a dashboard can see. The model calls are real HTTP from real worker actors through
``litellm.acompletion`` to :class:`~ray_judge.testing.FakeLLMServer`.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import waiting
from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec, Status, Verdict  # noqa: E402
from ray_judge.selection.override_file import remove_override, write_override  # noqa: E402
from ray_judge.testing import Behaviour, FakeLLMServer  # noqa: E402

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
#: Planted in the judge's environment; it may travel only on the wire to the provider.
KEY = f"sk-test-{secrets.token_hex(16)}"
MODEL_A, MODEL_B, MODEL_C = "openai/judge-a", "openai/judge-b", "openai/judge-c"
SPEC_A, SPEC_B, SPEC_C = (f"litellm:{m}" for m in (MODEL_A, MODEL_B, MODEL_C))
LATENCY_S = 0.05
#: So long that within this module only a notify can make the main judge re-read its file.
MAIN_TTL_S = 600
SHORT_TTL_S = 1.0
WAIT_S = 60.0  # bound on every poll below; reached only when something is broken


# ------------------------------------------------------------------------------ helpers


wait_for = functools.partial(waiting.wait_for, timeout=WAIT_S, every=0.05)


@dataclass
class Call:
    """One Ray call of the load loop: ``score`` (one id) or ``score_batch`` (several)."""

    seq: int
    ids: list[int]
    ref: Any
    submitted: float
    done: float | None = None  # time.monotonic() when the driver saw the result
    done_wall: float | None = None  # the same moment by time.time(), to compare with files
    verdicts: list[Verdict] = field(default_factory=list)
    error: BaseException | None = None


class LoadLoop(threading.Thread):
    """Keeps ``in_flight`` calls outstanding, alternating ``score`` and ``score_batch``.

    Every item carries a unique id as metadata, so the test can check that each request
    got exactly one Verdict. Completion times are when this driver saw the result.
    """

    def __init__(self, judge: Any, *, in_flight: int = 12, batch_size: int = 4) -> None:
        super().__init__(name="load-loop", daemon=True)
        self.judge, self.in_flight, self.batch_size = judge, in_flight, batch_size
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._next_id = 0
        self.crashed: BaseException | None = None

    def __enter__(self) -> LoadLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=WAIT_S)
        assert not self.is_alive(), "load loop did not drain"
        assert self.crashed is None, f"load loop crashed: {self.crashed!r}"

    def _submit(self) -> Call:
        seq = len(self.calls)
        if seq % 2 == 0:
            ids = [self._next_id]
            ref = self.judge.score.remote("What is 2+2?", answer(ids[0]), reference="4",
                                          metadata=ids[0])
        else:
            ids = list(range(self._next_id, self._next_id + self.batch_size))
            ref = self.judge.score_batch.remote(
                [{"prompt": "Name a prime.", "response": answer(i), "metadata": i}
                 for i in ids])
        self._next_id += len(ids)
        call = Call(seq, ids, ref, time.monotonic())
        with self._lock:
            self.calls.append(call)
        return call

    def run(self) -> None:
        try:
            pending: dict[Any, Call] = {}
            while not self._halt.is_set() or pending:
                while not self._halt.is_set() and len(pending) < self.in_flight:
                    call = self._submit()
                    pending[call.ref] = call
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.05)
                if not ready:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                now, now_wall = time.monotonic(), time.time()
                for ref in ready:
                    call = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # judged below: no call may fail
                        call.error = exc
                    else:
                        call.verdicts = [out] if isinstance(out, Verdict) else list(out)
                    with self._lock:
                        call.done, call.done_wall = now, now_wall
        except BaseException as exc:
            self.crashed = exc

    def finished(self, backend: str | None = None, after: float = 0.0) -> int:
        """Calls completed after ``after`` (monotonic), served by ``backend`` if given."""
        with self._lock:
            return sum(1 for c in self.calls if c.done is not None and c.done > after
                       and (backend is None or any(v.backend == backend for v in c.verdicts)))


def check_every_request_answered_ok(loop: LoadLoop) -> list[tuple[Call, Verdict]]:
    """Each call returned, each item got exactly one ok Verdict, a batch in its order."""
    assert loop.calls, "the load loop made no calls"
    errors = [c.error for c in loop.calls if c.error is not None]
    assert not errors, f"{len(errors)} calls failed, e.g. {errors[0]!r}"
    served = [(c, v) for c in loop.calls for v in c.verdicts]
    for call in loop.calls:
        assert [v.metadata for v in call.verdicts] == call.ids, call
    submitted = [i for c in loop.calls for i in c.ids]
    assert sorted(v.metadata for _, v in served) == sorted(submitted) == list(range(len(submitted)))
    bad = [v for _, v in served if v.status is not Status.OK]
    assert not bad, f"{len(bad)} of {len(served)} verdicts not ok, e.g. {bad[0]}"
    return served


def check_switched_once(loop: LoadLoop, old: str, new: str) -> tuple[float, int]:
    """The backend changed exactly once, old to new; returns the first new completion time.

    Order of submission is what the pool guarantees (one FIFO queue; the backend is
    chosen when an item is dispatched; Ray starts one caller's calls in the order they
    were made when, as here, their arguments are inline): it must read old...old
    new...new. By completion,
    the calls still in flight on the old backend at the switch may finish a few
    milliseconds after the first new ones; they must be only those, never old traffic
    that started after the switch.
    """
    served = check_every_request_answered_ok(loop)
    by_submission = [v.backend for _, v in served]
    assert set(by_submission) == {old, new}, set(by_submission)
    changes = sum(1 for x, y in itertools.pairwise(by_submission) if x != y)
    assert changes == 1 and by_submission[0] == old, (
        f"backend changed {changes} times in submission order: "
        f"{[b for i, b in enumerate(by_submission) if i == 0 or b != by_submission[i - 1]]}")
    first_new = min(c.done for c, v in served if v.backend == new)
    first_new_submitted = min(c.submitted for c, v in served if v.backend == new)
    late_old = [c for c, v in served if v.backend == old and c.done > first_new]
    assert all(c.submitted <= first_new_submitted for c in late_old)
    assert len({c.seq for c in late_old}) <= loop.in_flight
    return first_new, len(served)


def answer(i: int) -> str:
    return f"answer-{i:06d}"


def models_seen(server: FakeLLMServer) -> list[tuple[float, str]]:
    """``(arrival time.time(), model)`` of the provider's chat calls, in arrival order."""
    return [(r.at, (r.body or {}).get("model")) for r in server.requests
            if r.path.endswith("/chat/completions")]


def check_provider_saw_each_once(server: FakeLLMServer, served: list[tuple[Call, Verdict]]
                                 ) -> None:
    """Each request reached the provider exactly once, with the model its Verdict names:
    a switch neither repeats nor drops a call."""
    calls: dict[int, list[str]] = {}
    for r in server.requests:
        text = repr((r.body or {}).get("messages"))
        for found in re.findall(r"answer-(\d{6})", text):
            calls.setdefault(int(found), []).append(f"litellm:openai/{r.body['model']}")
    assert calls == {v.metadata: [v.backend] for _, v in served}


def switch_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, str(REPO / "switch_judge_backend.py"), *args],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out


def switch_env(backend_file: Path, *, notify: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LLM_JUDGE_") and k != "RAY_ADDRESS"}
    env["LLM_JUDGE_BACKEND_FILE"] = str(backend_file)
    if notify:
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    else:
        # No RAY_ADDRESS and no local `ray start` session to find: nobody to notify.
        env["RAY_TMPDIR"] = str(backend_file.parent / "no-ray-here")
    return env


def set_backend(judge: Any, path: Path, spec: str | None) -> None:
    """Put the main judge on ``spec`` (or back on its environment) now."""
    if spec is None:
        remove_override(path)
    else:
        write_override(path, BackendSpec.parse(spec))
    assert ray.get(judge.refresh_backend.remote(), timeout=30)["backend"] == (spec or SPEC_A)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    context = init_local(_system_config={"metrics_report_interval_ms": 1000})
    yield Path(context.address_info["session_dir"])
    ray.shutdown()


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(latency_s=LATENCY_S) as fake:
        yield fake


def judge_env(server: FakeLLMServer, backend_file: Path, **extra: str) -> dict[str, str]:
    return {
        "LLM_JUDGE_NAME": SPEC_A,
        "LLM_JUDGE_BACKEND_FILE": str(backend_file),
        "LLM_JUDGE_BACKEND_TTL": str(MAIN_TTL_S),
        "LLM_JUDGE_NUM_WORKERS": "2",
        # Every provider call is counted across switches here: no re-judging after a
        # switch (that has its own tests in test_shift_pool.py).
        "LLM_JUDGE_RESERVOIR_SIZE": "0",
        # ...and each request reaches the provider exactly once: no hedged calls (they
        # have their own tests in test_hedging_pool.py).
        "LLM_JUDGE_HEDGE": "off",
        "LLM_JUDGE_CANARY_SHARE": "0",  # nor canary calls (test_quality_pool.py)
        "OPENAI_API_BASE": f"{server.url}/v1",
        "OPENAI_API_KEY": KEY,
        "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        **extra,
    }


@pytest.fixture(scope="module")
def backend_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("main") / ".judge_backend"


@pytest.fixture(scope="module")
def judge(cluster, server, backend_file):
    handle = ray_judge.start_judge(env=judge_env(server, backend_file))
    # Warm both workers: each imports litellm (seconds of CPU) on its first call.
    warm = ray.get(handle.score_batch.remote(
        [{"prompt": "p", "response": str(i)} for i in range(8)]), timeout=120)
    assert all(v.ok and v.backend == SPEC_A for v in warm), warm
    yield handle
    ray_judge.stop_judge()


# -------------------------------------------------------------------------------- tests


def test_switch_under_load_takes_effect_at_once_with_the_notify(judge, server,
                                                                backend_file) -> None:
    set_backend(judge, backend_file, None)
    server.clear()
    with LoadLoop(judge) as loop:
        wait_for(lambda: loop.finished(SPEC_A) >= 80, "load on judge-a")
        started_wall, started = time.time(), time.monotonic()
        out = switch_cli("litellm", MODEL_B, env=switch_env(backend_file, notify=True))
        returned = time.monotonic()
        assert f"Running judge notified: it now serves {SPEC_B} (source: file)" in out.stdout
        wait_for(lambda: loop.finished(SPEC_B, after=returned) >= 80, "load on judge-b")
    first_b, total = check_switched_once(loop, SPEC_A, SPEC_B)
    check_provider_saw_each_once(server, check_every_request_answered_ok(loop))
    # The judge re-reads its file every 600 s: only the notify can have switched it, and
    # it did so by the time the command exited (the bound is loose on purpose: a busy
    # machine may take a moment to deliver the first new verdict).
    assert started < first_b < returned + 5.0, (first_b - started, returned - started)
    seen = models_seen(server)
    assert {m for _, m in seen} == {"judge-a", "judge-b"}
    # judge-b cannot have been asked before the file naming it was written. (Calls on
    # judge-a may reach the provider after the command returned: they were dispatched
    # before the switch and were still on their way through a busy worker.)
    assert all(at > started_wall for at, m in seen if m == "judge-b")
    assert total >= 300  # a real load, not a handful of calls


def test_switch_by_file_alone_takes_effect_within_the_ttl(cluster, server,
                                                          tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("ttl") / ".judge_backend"
    name = "judge_ttl"
    env = judge_env(server, path, LLM_JUDGE_BACKEND_TTL=str(SHORT_TTL_S),
                    LLM_JUDGE_NUM_WORKERS="1")
    judge = ray_judge.start_judge(name=name, env=env)
    try:
        assert ray.get(judge.score.remote("p", "r"), timeout=120).ok  # warm: import litellm
        server.clear()
        with LoadLoop(judge, in_flight=8) as loop:
            wait_for(lambda: loop.finished(SPEC_A) >= 20, "load on judge-a")
            started = time.monotonic()
            out = switch_cli("litellm", MODEL_B, env=switch_env(path, notify=False))
            assert "No Ray cluster found here" in out.stdout, out.stdout
            wait_for(lambda: loop.finished(SPEC_B) >= 20, "load on judge-b")
        first_b, _ = check_switched_once(loop, SPEC_A, SPEC_B)
        check_provider_saw_each_once(server, check_every_request_answered_ok(loop))
        # Nobody told the judge: it read the file on a dispatch at most 1 s after the
        # write. 3 s of slack for the verdict's way back on a loaded 2-core machine.
        written = path.stat().st_mtime
        first_b_wall = min(c.done_wall for c in loop.calls
                           if any(v.backend == SPEC_B for v in c.verdicts))
        assert started < first_b
        assert written < first_b_wall < written + SHORT_TTL_S + 3.0, first_b_wall - written
        assert {m for _, m in models_seen(server)} == {"judge-a", "judge-b"}
        status = ray.get(judge.status.remote())
        assert (status["backend"], status["source"], status["switches"]) == (SPEC_B, "file", 1)
    finally:
        assert ray_judge.stop_judge(name=name)


def test_worker_killed_mid_load_every_request_answered_in_order(judge, server,
                                                                backend_file) -> None:
    set_backend(judge, backend_file, SPEC_C)
    before = ray.get(judge.workers_info.remote())
    assert all(w["alive"] for w in before) and len(before) == 2
    with LoadLoop(judge, in_flight=16) as loop:
        wait_for(lambda: loop.finished() >= 30, "load before the kill")
        wait_for(lambda: sum(ray.get(judge.status.remote())["in_flight"].values()) > 0,
                 "requests in flight")
        killed = time.monotonic()
        os.kill(before[0]["pid"], signal.SIGKILL)
        # Ray restarts the worker (max_restarts=-1) with the judge's environment; it
        # imports litellm again and takes its share of the load.
        after = wait_for(lambda: _all_alive(judge), "the killed worker to come back")
        wait_for(lambda: loop.finished(after=killed) >= 60, "load after the kill")
    served = check_every_request_answered_ok(loop)
    assert {v.backend for _, v in served} == {SPEC_C}
    assert after[0]["pid"] != before[0]["pid"] and after[1]["pid"] == before[1]["pid"]
    assert ray.get(judge.score.remote("p", "r")).ok


def test_judge_killed_is_restarted_from_file_and_environment(judge, server,
                                                             backend_file) -> None:
    set_backend(judge, backend_file, SPEC_C)
    before = ray.get(judge.status.remote())
    old_workers = [w["pid"] for w in ray.get(judge.workers_info.remote())]
    # Three requests that will still be at the provider when the judge dies.
    server.script(*[Behaviour.ok(delay_s=30)] * 3)
    doomed = [judge.score.remote("p", f"doomed {i}") for i in range(3)]
    wait_for(lambda: sum(ray.get(judge.status.remote())["in_flight"].values()) == 3,
             "three requests in flight")
    ray.kill(judge, no_restart=False)

    # What a caller sees for a call that was in flight: a Ray error, not a Verdict. The
    # judge cannot answer for calls its dead process held; retrying is the caller's
    # policy. Ray 2.60 raises ActorUnavailableError ("The actor was restarted. The task
    # may or may not have been executed"), a RayActorError.
    for ref in doomed:
        with pytest.raises(ray.exceptions.RayActorError) as info:
            ray.get(ref, timeout=WAIT_S)
        assert isinstance(info.value, ray.exceptions.ActorUnavailableError), info.value

    wait_for(lambda: _answers(judge), "the judge to restart")
    after = ray.get(judge.status.remote())
    assert after["pid"] != before["pid"] and after["node_id"] == before["node_id"]
    # Rebuilt from the file (the override is in force) and from the environment it was
    # started with (the TTL, the worker count, the provider's base URL and key).
    assert (after["backend"], after["source"]) == (SPEC_C, "file")
    assert after["override_file"] == str(backend_file)
    assert after["workers"] == 2
    # Counters live in the process: they start again from zero.
    assert after["total"] == 0 and after["switches"] == 0
    workers = ray.get(judge.workers_info.remote())
    assert all(w["alive"] for w in workers) and not {w["pid"] for w in workers} & set(old_workers)
    # The old workers were owned by the dead judge and die with it: nothing leaks.
    wait_for(lambda: not any(_pid_alive(p) for p in old_workers), "the old workers to exit")

    same = ray.get_actor("judge", namespace="ray_judge")
    verdicts = ray.get(same.score_batch.remote(
        [{"prompt": "p", "response": str(i), "metadata": i} for i in range(10)]), timeout=120)
    assert [v.metadata for v in verdicts] == list(range(10))
    assert all(v.ok and v.backend == SPEC_C for v in verdicts), verdicts
    assert models_seen(server)[-1][1] == "judge-c"
    # the TTL came back from the environment too: no re-read happens without a notify
    write_override(backend_file, BackendSpec.parse(SPEC_A))
    assert ray.get(judge.score.remote("p", "r")).backend == SPEC_C
    assert ray.get(judge.refresh_backend.remote())["backend"] == SPEC_A


def _all_alive(judge: Any) -> list[dict[str, Any]] | None:
    workers = ray.get(judge.workers_info.remote())
    return workers if all(w["alive"] for w in workers) else None


def _answers(judge: Any) -> bool:
    try:
        return ray.get(judge.ping.remote(), timeout=5) == "pong"
    except ray.exceptions.RayError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_key_appears_in_no_status_repr_metrics_or_log(cluster, judge, server,
                                                          backend_file) -> None:
    set_backend(judge, backend_file, None)
    server.clear()
    # The provider echoes the key in its error, as OpenAI does for a wrong one.
    server.script(Behaviour.error(401, f"Incorrect API key provided: {KEY}. Find yours at "
                                       "https://example.invalid/keys."))
    refused = ray.get(judge.score.remote("p", "refused"))
    assert refused.status is Status.AUTH_ERROR
    assert "Incorrect API key provided: ***" in refused.error and KEY not in repr(refused)
    # Positive control: the key did reach the workers and went out on the wire.
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"

    status = ray.get(judge.status.remote())
    # The provider's message reached the status (the failover circuit's reason), masked.
    assert "Incorrect API key provided: ***" in repr(status)
    assert KEY not in repr(status)
    assert KEY not in repr(judge) and KEY not in str(judge)
    port = ray.nodes()[0]["MetricsExportPort"]

    def metrics() -> str | None:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        text = text.decode()
        return text if "ray_judge_requests_total" in text else None

    assert KEY not in wait_for(metrics, "the judge's metrics", every=0.5)

    logs = cluster / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert len(files) > 10 and any("worker" in p.name for p in files)
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert not leaks, f"the API key was written to {leaks}"
