"""The pool tier: tests against a real Ray cluster, through the judge pool.

Everything here carries the ``ray`` marker; ``pytest tests/pool`` runs the tier.
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
            item.add_marker(pytest.mark.ray)
