"""The CLI tier: the Claude Code backends, driving the real CLI where it is installed
(``npm install --prefix .ci/node @anthropic-ai/claude-code@2.1.332``) and
fake_claude.py for the faults the real one cannot be made to show.

Everything here carries the ``cli`` marker: ``pytest -m "not cli"`` leaves the tier out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ray_judge.testing import FakeLLMServer
from tests.ccode_support import API_KEY, OutsideTrap

HERE = Path(__file__).resolve().parent


# tryfirst: the marker must be on the items before ``-m`` deselects by it. The hook sees
# every collected item, not only this directory's.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.cli)


# The fixtures the real-CLI modules share: a fake Anthropic API on 127.0.0.1 for the CLI
# to call, and a trap proxy that fails a test whose CLI tried to reach anything else.

@pytest.fixture(scope="module")
def trap():
    """A proxy that records any connection the CLI makes beyond 127.0.0.1."""
    outside = OutsideTrap()
    yield outside
    outside.sock.close()


@pytest.fixture(scope="module")
def server():
    """The fake Anthropic API, one per module."""
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def fake(server, trap):
    server.reset()
    trap.seen.clear()
    yield server
    assert trap.seen == [], "the CLI tried to reach beyond 127.0.0.1"


@pytest.fixture
def env(tmp_path, fake, trap):
    """A user's environment for the CLI: a fresh HOME, the fake API, the trap as proxy."""
    home = tmp_path / "user_home"
    home.mkdir()
    return {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": fake.url, "HTTPS_PROXY": trap.url, "HTTP_PROXY": trap.url,
            "NO_PROXY": "127.0.0.1,localhost"}
