"""Fixtures the unit tier's LiteLLM modules share: the in-process fake providers and an
environment that points every provider at them. Neither is autouse: most unit tests
need no server."""

from __future__ import annotations

import pytest

from ray_judge.backends.litellm_backend import load_litellm
from ray_judge.testing import FakeLLMServer
from tests.unit.fake_providers import KEYS


@pytest.fixture(scope="module")
def server():
    """The in-process fake OpenAI and Anthropic APIs, one per module that asks."""
    load_litellm()
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def provider_env(server, monkeypatch):
    """Every provider pointed at ``server`` with planted keys; a module opts in with
    ``pytestmark = pytest.mark.usefixtures("provider_env")``."""
    server.reset()
    monkeypatch.setenv("OPENAI_API_BASE", f"{server.url}/v1")
    monkeypatch.setenv("ANTHROPIC_API_BASE", server.url)
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", f"{server.url}/v1")
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    for name in ("OPENAI_ORGANIZATION", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
