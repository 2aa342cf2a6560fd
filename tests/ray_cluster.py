"""Helpers for tests that need a real Ray cluster on loopback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RAY_TEST_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "RAY_DEDUP_LOGS": "0",
    # Ray's own switch that makes a Linux node use 127.0.0.1 as its address (it is meant
    # for laptops); without it ray.init(_node_ip_address="127.0.0.1") still resolves
    # the machine's network address and Ray processes talk to each other over it.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def prepare_env() -> Path:
    """Set the environment every Ray test needs; returns a short per-run RAY_TMPDIR."""
    os.environ.update(RAY_TEST_ENV)
    # AF_UNIX socket paths are limited to ~107 bytes: keep the temp dir short.
    tmp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(tmp)
    return tmp


#: Starts of a cluster before giving up: Ray's raylet waits a fixed 30 s at start-up and
#: misses it now and then on a loaded 2-core machine ("timed out during startup").
START_ATTEMPTS = 3


def init_local(**kwargs):
    """A fresh local cluster bound to 127.0.0.1, no dashboard unless asked.

    A start that timed out is retried here, the one place every test's cluster comes
    from; any other failure is raised at once.
    """
    import ray

    for attempt in range(1, START_ATTEMPTS + 1):
        tmp = prepare_env()
        options = {"num_cpus": 2, "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                   "_temp_dir": str(tmp), "log_to_driver": False}
        options.update(kwargs)
        try:
            return ray.init(**options)
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS:
                raise
            ray.shutdown()
            print(f"ray.init timed out during startup (attempt {attempt}); retrying")
    raise AssertionError("unreachable")

# Ray reads some of these when it is imported: set them as soon as a test module that
# needs a cluster is imported (conftest.py imports this module first for the same reason).
os.environ.update(RAY_TEST_ENV)
