"""The system tier: whole processes as a person runs them (launch.sh, the example job,
serve-rm in a network namespace, the fake provider's own process), the fault scenario,
several nodes, Prometheus, tmux and the RL frameworks; each module keeps its own cluster.

Everything here carries the ``slow`` marker: ``pytest -m "not slow"`` leaves the tier out.
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
            item.add_marker(pytest.mark.slow)
