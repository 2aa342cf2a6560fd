"""Talk to a running judge from a shell: notify it of a switch, read its live status.

Used by the switch CLI after it wrote the override file. Everything is bounded: a
missing or sick cluster costs a few seconds at most and never fails the command,
because the file is the durable truth and the judge re-reads it within the TTL anyway.
Ray is imported only when a cluster looks reachable.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import JudgeConfig

__all__ = ["JudgeUnreachable", "bounded", "cluster_address", "live_shift_pairs", "live_status",
           "refresh_running_judge"]

T = TypeVar("T")

#: Seconds to connect to the cluster and get an answer from the judge.
DEFAULT_WAIT_S = 8.0


class JudgeUnreachable(Exception):
    """No judge answered; the message says why in words a person can act on."""


def cluster_address(environ: dict[str, str] | None = None) -> str | None:
    """``RAY_ADDRESS``, else "auto" when this machine has a running cluster, else None.

    Checked without importing ray: a session file is left by ``ray start``.
    """
    env = os.environ if environ is None else environ
    if env.get("RAY_ADDRESS"):
        return env["RAY_ADDRESS"]
    tmp = Path(env.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return "auto" if tmp.is_file() else None


def bounded(fn: Callable[[], T], wait_s: float, what: str) -> T:
    """Run ``fn`` in a daemon thread; give up after ``wait_s`` (the thread is abandoned)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"ray_judge-{what}", daemon=True)
    thread.start()
    thread.join(wait_s)
    if thread.is_alive():
        raise JudgeUnreachable(f"no answer from the cluster within {wait_s:g}s ({what})")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _call_judge(config: JudgeConfig, method: str, wait_s: float) -> Any:
    address = cluster_address()
    if address is None:
        raise JudgeUnreachable("no running Ray cluster found (RAY_ADDRESS is not set)")

    def call() -> Any:
        logging.getLogger("ray").setLevel(logging.ERROR)
        import ray

        if not ray.is_initialized():
            ray.init(address=address, namespace=config.namespace, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=False)
        try:
            handle = ray.get_actor(config.actor_name, namespace=config.namespace)
        except ValueError:
            raise JudgeUnreachable(
                f"the cluster at {address} runs no judge {config.actor_name!r} "
                f"in namespace {config.namespace!r}") from None
        return ray.get(getattr(handle, method).remote(), timeout=wait_s)

    try:
        return bounded(call, wait_s, method)
    except JudgeUnreachable:
        raise
    except ConnectionError as exc:
        raise JudgeUnreachable(f"could not connect to Ray at {address}: {exc}") from None
    except Exception as exc:
        raise JudgeUnreachable(f"the judge did not answer: {type(exc).__name__}: {exc}") from None


def refresh_running_judge(config: JudgeConfig, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """Make a running judge re-read the override file now; returns what it now uses."""
    return _call_judge(config, "refresh_backend", wait_s)


def live_status(config: JudgeConfig, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """The running judge's ``status()``."""
    return _call_judge(config, "status", wait_s)


def live_shift_pairs(config: JudgeConfig, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """The running judge's ``shift_pairs()``: per judge, the paired scores of the latest
    switch."""
    return _call_judge(config, "shift_pairs", wait_s)
