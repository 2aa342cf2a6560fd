"""The pool's processes tune CPython's cyclic garbage collector (ray_judge.pool.collector).

Each check runs in a fresh interpreter: the collector's settings are per process, and
pytest's own must stay as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


def run(code: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "LITELLM_OFFLINE_MODE": "true", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tune_raises_only_the_young_generations_threshold() -> None:
    out = run("""
        import gc, json
        from ray_judge.pool import collector
        before = gc.get_threshold()
        collector.tune(0)
        untouched = gc.get_threshold()
        collector.tune(50_000)
        print(json.dumps({"before": before, "untouched": untouched,
                          "after": gc.get_threshold()}))
    """)
    assert out["untouched"] == out["before"]
    assert out["after"] == [50_000, *out["before"][1:]]


def test_freeze_once_per_kind_and_never_with_threshold_0() -> None:
    out = run("""
        import gc, json
        from ray_judge.pool import collector
        collector.freeze(0, "litellm")
        off = gc.get_freeze_count()
        collector.freeze(50_000, "litellm")
        first = gc.get_freeze_count()
        keep = [[i] for i in range(10_000)]  # new objects, alive
        collector.freeze(50_000, "litellm")  # the same kind again: nothing more pinned
        again = gc.get_freeze_count()
        collector.freeze(50_000, "ccode")
        print(json.dumps({"off": off, "first": first, "again": again,
                          "other": gc.get_freeze_count()}))
    """)
    assert out["off"] == 0
    assert out["first"] > 0 and out["again"] == out["first"]
    assert out["other"] >= out["first"] + 10_000


@pytest.mark.parametrize(("setting", "frozen"), [(None, True), ("0", False)])
def test_a_worker_freezes_after_its_first_backend_is_ready(setting: str | None,
                                                           frozen: bool) -> None:
    """A JudgeWorker (the class the pool's worker actors run, here outside Ray) tunes the
    collector when it starts and freezes once its first backend has started (the built-in
    fake model stands in for LiteLLM: what is measured is the worker, not a model)."""
    env = {} if setting is None else {"LLM_JUDGE_GC_THRESHOLD": setting}
    out = run("""
        import asyncio, gc, json, os
        from ray_judge.pool.worker import JudgeWorker
        from ray_judge.verdict import JudgeRequest
        worker = JudgeWorker(0, dict(os.environ), os.getcwd(),
                             {"litellm": "ray_judge.backends.fake:FakeBackend"})
        started = gc.get_freeze_count()
        verdicts = asyncio.run(worker.judge_batch(
            "litellm:fake/any", [JudgeRequest("What is 2+2?", "4", "4")]))
        print(json.dumps({"threshold": gc.get_threshold()[0], "started": started,
                          "frozen": gc.get_freeze_count(), "ok": verdicts[0].ok}))
    """, **env)
    assert out["ok"] and out["started"] == 0
    assert out["threshold"] == (50_000 if frozen else 700)
    assert (out["frozen"] > 0) is frozen
