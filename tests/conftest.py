"""Shared test set-up: every test starts from a clean judge environment in its own cwd.

The tiers (unit, pool, cli, system) each have a conftest.py that marks what is in them.
Fixtures that only one module needs (a Ray cluster, a fake CLI) live in that module.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings

# Set at import, before any test module is collected: importing litellm without it
# tries to fetch the model cost map from the network and stalls.
os.environ["LITELLM_OFFLINE_MODE"] = "true"
# Ray reads some settings when it is imported (e.g. the one that keeps it on 127.0.0.1):
# set them before any test module imports ray.
import tests.ray_cluster  # noqa: F401
from tests.ccode_support import real_cli

# A test that sets max_examples keeps it under both profiles; the profile decides the rest.
# ci runs twice hypothesis' default of 100 and prints the blob that replays a failure;
# dev runs fewer, for a quick loop. HYPOTHESIS_PROFILE picks one by name.
settings.register_profile("ci", max_examples=200, print_blob=True)
settings.register_profile("dev", max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") == "true" else "dev"))


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the real Claude Code CLI carries the ``cli`` marker, wherever
    it lives, so ``-m "not cli"`` leaves all of them out."""
    for item in items:
        if real_cli.mark in item.iter_markers("skipif"):
            item.add_marker(pytest.mark.cli)


@pytest.fixture(autouse=True)
def clean_judge_env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No ``LLM_JUDGE_*`` or ``CLAUDE_CLI_PATH`` from the caller's shell; cwd is tmp_path,
    so the default ``.judge_backend`` of a test never touches the repository."""
    for name in list(os.environ):
        if name.startswith("LLM_JUDGE_") or name in ("CLAUDE_CLI_PATH", "RAY_ADDRESS"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LITELLM_OFFLINE_MODE", "true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without the interpreter's finalisation once pytest has reported everything.

    Every test has run and the summary is printed by now. What is left is Python tearing
    down the native threads Ray's and gRPC's extensions started in this process, and that
    is where a full run sometimes dies of SIGSEGV after every test passed (CI on 12-07:
    2,169 passed, then exit 139, no Python frame in the faulthandler output). The exit
    status is pytest's own.
    """
    if not _exit_status:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status[-1])
