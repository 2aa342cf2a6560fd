"""How every caller reaches the judge through Ray: join the cluster, find the judge, call it.

One policy, written once: the training script's client, ``start_judge``, the switch CLI,
``ray-judge`` and ``watch`` all join a cluster through :func:`connect` and find the
judge through :func:`find`, so "no cluster", "no judge" and "the judge did not answer"
read the same everywhere. A shell command's calls are bounded (:func:`call`): a missing
or sick cluster costs a few seconds at most, and the switch CLI never fails for it,
because the override file is the durable truth and the judge re-reads it within the TTL
anyway. Ray is imported only when a cluster looks reachable.
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
from ..errors import JudgeNotRunningError

__all__ = ["NO_CLUSTER", "JudgeUnreachable", "bounded", "call", "cluster_address", "connect",
           "find", "live_shift_pairs", "live_status", "refresh_running_judge"]

T = TypeVar("T")

#: Seconds to connect to the cluster and get an answer from the judge.
DEFAULT_WAIT_S = 8.0


#: What a command that needs a running cluster says when there is none.
NO_CLUSTER = ("no Ray cluster found here: start one with ./launch.sh or `ray start --head`, "
              "or set RAY_ADDRESS")


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


def connect(address: str | None = None, *, namespace: str | None = None,
            start_local: bool = False, quiet: bool = False,
            wait_s: float | None = None) -> Any:
    """Join a Ray cluster unless this process already has; returns the ``ray`` module.

    Args:
        address: the cluster; by default :func:`cluster_address` (``RAY_ADDRESS``, or the
            cluster ``ray start``/``launch.sh`` left on this machine).
        namespace: the job's default namespace.
        start_local: with no cluster found, start one in this process (``start_judge``
            from a script); otherwise raise :class:`JudgeUnreachable` (:data:`NO_CLUSTER`).
        quiet: keep Ray's own logging out of a shell command's output.
        wait_s: give up after this long (``ray.init`` retries a wrong or dead address for
            minutes, in silence); None waits as Ray does.
    """
    if quiet:
        logging.getLogger("ray").setLevel(logging.ERROR)
    import ray

    if ray.is_initialized():
        return ray
    if address is None:
        # A script may start a cluster of its own: ray.init finds one or starts one. A
        # shell command joins only a cluster that is there.
        address = (os.environ.get("RAY_ADDRESS") or None) if start_local else cluster_address()
        if address is None and not start_local:
            raise JudgeUnreachable(NO_CLUSTER)
    options: dict[str, Any] = {"address": address, "namespace": namespace,
                               "log_to_driver": False}
    if quiet:
        options.update(logging_level=logging.ERROR, configure_logging=False)
    if wait_s is None:
        ray.init(**options)
    else:
        bounded(lambda: ray.init(**options), wait_s, f"connecting to Ray at {address}")
    return ray


def find(name: str, namespace: str) -> Any:
    """The judge actor's handle; :class:`JudgeNotRunningError` when there is none."""
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise JudgeNotRunningError(
            f"no judge actor {name!r} in namespace {namespace!r}; start one with "
            "ray_judge.start_judge() or ./launch.sh", name=name, namespace=namespace) from None


def call(config: JudgeConfig, method: str, wait_s: float = DEFAULT_WAIT_S) -> Any:
    """``method()`` of the running judge, from a shell command: bounded, and every way it
    can fail is a :class:`JudgeUnreachable` that says why."""
    address = cluster_address()
    if address is None:
        raise JudgeUnreachable("no running Ray cluster found (RAY_ADDRESS is not set)")

    def ask() -> Any:
        ray = connect(address, namespace=config.namespace, quiet=True)
        try:
            handle = find(config.actor_name, config.namespace)
        except JudgeNotRunningError:
            raise JudgeUnreachable(
                f"the cluster at {address} runs no judge {config.actor_name!r} "
                f"in namespace {config.namespace!r}") from None
        return ray.get(getattr(handle, method).remote(), timeout=wait_s)

    try:
        return bounded(ask, wait_s, method)
    except JudgeUnreachable:
        raise
    except ConnectionError as exc:
        raise JudgeUnreachable(f"could not connect to Ray at {address}: {exc}") from None
    except Exception as exc:
        raise JudgeUnreachable(f"the judge did not answer: {type(exc).__name__}: {exc}") from None


def refresh_running_judge(config: JudgeConfig, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """Make a running judge re-read the override file now; returns what it now uses."""
    return call(config, "refresh_backend", wait_s)


def live_status(config: JudgeConfig, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """The running judge's ``status()``."""
    return call(config, "status", wait_s)


def live_shift_pairs(config: JudgeConfig, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """The running judge's ``shift_pairs()``: per judge, the paired scores of the latest
    switch."""
    return call(config, "shift_pairs", wait_s)
