"""The judge pool on a real Ray cluster: the contract, switching, bad input, workers dying.

The model is a FakeBackend (through the backend registry) so these tests are about the
pool; the real backends are tested against real peers in their own modules and the
LiteLLM path through the pool in tests/system/test_pool_litellm.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec, Status, Verdict  # noqa: E402
from ray_judge.selection.override_file import write_override  # noqa: E402

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
FAKE = {"litellm": "ray_judge.backends.fake:FakeBackend",
        "ccode": "ray_judge.backends.fake:FakeBackend"}


def ray_judge_write(path: Path, spec: str) -> None:
    write_override(path, BackendSpec.parse(spec))


@pytest.fixture(scope="module")
def judge_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    env = {
        "LLM_JUDGE_NAME": "litellm:fake/primary",
        "LLM_JUDGE_BACKEND_FILE": str(root / ".judge_backend"),
        "LLM_JUDGE_NUM_WORKERS": "2",
        # Every provider call is counted across switches here: no re-judging after a
        # switch (that has its own tests in test_shift_pool.py).
        "LLM_JUDGE_RESERVOIR_SIZE": "0",
        "LLM_JUDGE_HEDGE": "off",  # nor hedged calls (tests/pool/test_hedging_ray.py)
        "LLM_JUDGE_CANARY_SHARE": "0",  # nor canaries (tests/pool/test_quality_pool.py)
        "LLM_JUDGE_BACKEND_TTL": "5",
        "LITELLM_OFFLINE_MODE": "true",
    }
    return env, root / ".judge_backend"


@pytest.fixture(scope="module")
def judge(cluster, judge_env):
    env, _ = judge_env
    handle = ray_judge.start_judge(env=env, backend_registry=FAKE)
    yield handle
    ray_judge.stop_judge()


def test_contract_score_and_get_actor_by_name(judge) -> None:
    same = ray.get_actor("judge", namespace="ray_judge")
    verdict = ray.get(same.score.remote("What is 2+2?", "4", reference="4"))
    assert isinstance(verdict, Verdict)
    assert verdict.status is Status.OK and 0.0 <= verdict.score <= 1.0
    assert verdict.backend == "litellm:fake/primary"
    assert verdict.attempts == 1 and verdict.latency_s >= 0.0


def test_start_judge_is_get_or_create(judge, judge_env) -> None:
    env, _ = judge_env
    again = ray_judge.start_judge(env=env, backend_registry=FAKE)
    assert again._actor_id == judge._actor_id


def test_score_batch_keeps_order(judge) -> None:
    items = [{"prompt": f"q{i}", "response": f"a{i}", "reference": "x", "metadata": i}
             for i in range(300)]
    verdicts = ray.get(judge.score_batch.remote(items))
    assert [v.metadata for v in verdicts] == list(range(300))
    assert all(v.ok for v in verdicts)
    assert ray.get(judge.score_batch.remote([])) == []


def test_status_reports_backend_source_and_counts(judge, judge_env) -> None:
    _, path = judge_env
    ray.get(judge.score.remote("p", "r"))
    status = ray.get(judge.status.remote())
    assert status["backend"] == "litellm:fake/primary"
    assert status["source"] == "env"
    assert status["override_file"] == str(path)
    assert status["total"] >= 1
    assert status["counts"]["litellm:fake/primary"]["ok"] >= 1
    assert status["latency_p50_s"] is not None
    assert "queued" in status and "in_flight" in status
    assert not any("KEY" in k.upper() for k in status)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda j: j.score.remote(123, "r"), TypeError, "request.prompt must be a string"),
        (lambda j: j.score.remote("p", None), TypeError, "request.response must be a string"),
        (lambda j: j.score.remote("p", "r", reference=5), TypeError, "reference"),
        (lambda j: j.score_batch.remote("not a list"), TypeError, "list of dicts"),
        (lambda j: j.score_batch.remote({"prompt": "p"}), TypeError, "list of dicts"),
        (lambda j: j.score_batch.remote([{"prompt": "p", "response": "r"}, {"prompt": "p"}]),
         ValueError, "request[1] is missing the field 'response'"),
        (lambda j: j.score_batch.remote([{"prompt": "p", "response": "r"}, 7]),
         TypeError, "request[1] must be a dict"),
        (lambda j: j.score_batch.remote([{"prompt": "p", "response": 3}]),
         TypeError, "request[0].response must be a string"),
        (lambda j: j.score_batch.remote([{"prompt": "p", "response": "r", "extra": 1}]),
         ValueError, "unknown field"),
    ],
)
def test_bad_input_raises_to_the_caller(judge, call, error, words) -> None:
    with pytest.raises(error) as info:
        ray.get(call(judge))
    assert words in str(info.value)


def test_actor_survives_a_bad_input_storm(judge) -> None:
    refs = [judge.score.remote(i, "r") for i in range(200)]
    refs += [judge.score_batch.remote("x") for _ in range(100)]
    for ref in refs:
        with pytest.raises((TypeError, ValueError)):
            ray.get(ref)
    assert ray.get(judge.score.remote("p", "r")).ok


def test_switch_by_file_and_refresh_reaches_new_requests(judge, judge_env) -> None:
    _, path = judge_env
    # A real `switch_judge_backend.py` against this cluster: it writes the file, then
    # notifies the judge, so the very next request is served by the new backend (the
    # TTL of 5 s has not passed).
    env = {**os.environ, "LLM_JUDGE_BACKEND_FILE": str(path),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    out = subprocess.run(
        [sys.executable, str(REPO / "switch_judge_backend.py"), "litellm", "fake/second"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "Running judge notified: it now serves litellm:fake/second (source: file)" in out.stdout
    assert ray.get(judge.score.remote("p", "r")).backend == "litellm:fake/second"
    shown = subprocess.run([sys.executable, str(REPO / "switch_judge_backend.py"), "show"],
                           env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "Running judge: serving litellm:fake/second (source: file)" in shown.stdout, shown
    status = ray.get(judge.status.remote())
    assert status["source"] == "file" and status["switches"] >= 1
    path.unlink()
    ray.get(judge.refresh_backend.remote())
    assert ray.get(judge.score.remote("p", "r")).backend == "litellm:fake/primary"


def test_control_methods_answer_while_thousands_are_queued(judge) -> None:
    # Slow the pool down to one slot so most calls wait in the queue.
    refs = [judge.score_batch.remote([{"prompt": "p", "response": str(i)}] * 20)
            for i in range(100)]
    start = time.monotonic()
    status = ray.get(judge.status.remote(), timeout=30)
    elapsed = time.monotonic() - start
    assert status["backend"]
    ray.get(refs, timeout=120)
    # Not a timing assertion on the machine: a loose bound that only a blocked
    # control group (waiting for 2,000 verdicts) would break.
    assert elapsed < 20


def test_worker_killed_mid_load_loses_no_request(judge, judge_env) -> None:
    _, path = judge_env
    ray_judge_write(path, "litellm:fake/slow@0.3")
    ray.get(judge.refresh_backend.remote())
    items = [{"prompt": "p", "response": str(i), "metadata": i} for i in range(600)]
    ref = judge.score_batch.remote(items)
    pids = [w["pid"] for w in ray.get(judge.workers_info.remote()) if w["alive"]]
    assert len(pids) == 2
    time.sleep(0.1)
    assert sum(ray.get(judge.status.remote())["in_flight"].values()) > 0
    os.kill(pids[0], 9)
    verdicts = ray.get(ref, timeout=120)
    assert [v.metadata for v in verdicts] == list(range(600))
    assert all(v.ok for v in verdicts), {v.status for v in verdicts}
    # the worker came back (max_restarts=-1) and the pool serves on
    deadline = time.monotonic() + 60
    while not all(w["alive"] for w in ray.get(judge.workers_info.remote())):
        assert time.monotonic() < deadline, "killed worker did not restart"
        time.sleep(0.5)
    assert ray.get(judge.score.remote("p", "r")).ok
    path.unlink()
    ray.get(judge.refresh_backend.remote())
