"""Shared test set-up: every test starts from a clean judge environment in its own cwd.

Fixtures that only one module needs (a Ray cluster, a fake CLI) live in that module.
"""

from __future__ import annotations

import os

import pytest

# Set at import, before any test module is collected: importing litellm without it
# tries to fetch the model cost map from the network and stalls.
os.environ["LITELLM_OFFLINE_MODE"] = "true"
# Ray reads some settings when it is imported (e.g. the one that keeps it on 127.0.0.1):
# set them before any test module imports ray.
import tests.ray_cluster  # noqa: F401


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
