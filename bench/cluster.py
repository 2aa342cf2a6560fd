"""The bench's own Ray cluster on 127.0.0.1, and a judge on it configured per scenario."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import procs

#: Set before ``import ray``: Ray reads some of these at import (the first keeps every
#: Ray process on 127.0.0.1 instead of the machine's network address).
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
}
REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-dummy-key-0000000000"


def prepare_env() -> None:
    os.environ.update(RAY_ENV)


def find_cli(explicit: str | None = None) -> str | None:
    """The Claude Code CLI: ``--claude``, ``CLAUDE_CLI_PATH``, ``.ci/node``, or on PATH."""
    for candidate in (explicit, os.environ.get("CLAUDE_CLI_PATH"),
                      str(REPO / ".ci/node/node_modules/.bin/claude"), shutil.which("claude")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Cluster:
    """``ray.init`` of a fresh local cluster in a short private temp dir; one judge at a time."""

    def __init__(self, work: Path, num_cpus: int | None = None) -> None:
        prepare_env()
        import ray

        self.ray = ray
        self.work = work
        self.tmp = Path(tempfile.mkdtemp(prefix="rjb", dir="/tmp"))  # AF_UNIX paths are short
        for attempt in range(3):
            before = procs.descendants([os.getpid()], procs.snapshot())
            try:
                ray.init(num_cpus=num_cpus or os.cpu_count() or 2, include_dashboard=False,
                         _node_ip_address="127.0.0.1", _temp_dir=str(self.tmp),
                         log_to_driver=False)
                break
            except Exception as exc:  # Ray waits 30 s at most for its raylet to register
                if "timed out during startup" not in str(exc) or attempt == 2:
                    raise
                # On a machine this loaded, try again, after ending what the failed start
                # left running (its GCS and helpers: ray.shutdown() does not know them).
                ray.shutdown()
                for pid in procs.descendants([os.getpid()], procs.snapshot()) - before:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        self.address = ray.get_runtime_context().gcs_address
        self.judge: Any = None
        self.judge_env: dict[str, str] = {}

    def start_judge(self, env: Mapping[str, str], *, warm: list[dict[str, Any]] | None = None,
                    timeout_s: float = 180.0) -> Any:
        """Stop any judge, start one whose settings come from ``env`` alone."""
        from ray_judge.pool.service import start_judge

        self.stop_judge()
        self.judge_env = dict(env)
        self.judge = start_judge(env=self.judge_env, timeout_s=timeout_s)
        if warm:  # workers import their backend (litellm: seconds of CPU) on first use
            self.ray.get(self.judge.score_batch.remote(warm), timeout=timeout_s)
        return self.judge

    def stop_judge(self) -> None:
        from ray_judge.pool.service import stop_judge

        if self.judge is not None:
            stop_judge()
            self.judge = None
            time.sleep(0.5)  # let the workers' processes go before the next measurement

    def pids(self) -> tuple[int, list[int]]:
        """The judge's pid and its workers'."""
        status = self.ray.get(self.judge.status.remote(), timeout=60)
        workers = self.ray.get(self.judge.workers_info.remote(), timeout=60)
        return status["pid"], [w["pid"] for w in workers if w.get("alive")]

    def cpu(self, exclude: list[int]) -> float:
        """CPU seconds so far of this process and every Ray process it started, less
        ``exclude`` (the fake providers, which are counted on their own)."""
        return procs.tree_cpu([os.getpid()], exclude)

    def close(self) -> None:
        try:
            self.stop_judge()
        finally:
            self.ray.shutdown()
            shutil.rmtree(self.tmp, ignore_errors=True)


def litellm_env(url: str, work: Path, model: str, **settings: str) -> dict[str, str]:
    """A judge serving ``litellm:<model>`` from the fake provider at ``url``."""
    return {
        "LLM_JUDGE_NAME": f"litellm:{model}",
        "LLM_JUDGE_BACKEND_FILE": str(work / ".judge_backend"),
        "OPENAI_API_BASE": f"{url}/v1",
        "OPENAI_API_KEY": API_KEY,
        **RAY_ENV,
        **settings,
    }


def ccode_env(url: str, work: Path, cli: str, **settings: str) -> dict[str, str]:
    """A judge serving ``ccode-4-sonnet`` through ``cli`` against the fake Messages API."""
    config_dir = work / "claude-config"  # no login of this machine's user is involved
    config_dir.mkdir(exist_ok=True)
    return {
        "LLM_JUDGE_NAME": "ccode-4-sonnet",
        "LLM_JUDGE_BACKEND_FILE": str(work / ".judge_backend"),
        "CLAUDE_CLI_PATH": cli,
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": API_KEY,
        **RAY_ENV,
        **settings,
    }


def items(n: int, tag: str) -> list[dict[str, str]]:
    """``n`` distinct requests (distinct, so the verdict cache never answers them)."""
    return [{"prompt": f"What is {i} + {i}? [{tag}]", "response": f"It is {2 * i}.",
             "reference": str(2 * i)} for i in range(n)]
