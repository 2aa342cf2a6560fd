"""The CLI tier: the Claude Code backends, driving the real CLI where it is installed
(``npm install --prefix .ci/node @anthropic-ai/claude-code@2.1.332``) and
fake_claude.py for the faults the real one cannot be made to show.

Everything here carries the ``cli`` marker: ``pytest -m "not cli"`` leaves the tier out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


# tryfirst: the marker must be on the items before ``-m`` deselects by it. The hook sees
# every collected item, not only this directory's.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.cli)
