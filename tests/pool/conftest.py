"""The pool tier: tests against a real Ray cluster, through the judge pool.

Everything here carries the ``ray`` marker; ``pytest tests/pool`` runs the tier. The
modules share one cluster (:func:`cluster`): a start costs Ray's fixed
30 s raylet wait. Each module names its judges, and stops them; a judge left behind
fails that module's teardown (:func:`no_judge_left_behind`), so no module ever gets
another's judge from ``start_judge``'s get-or-create.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.ray_cluster import init_local

HERE = Path(__file__).resolve().parent


# tryfirst: the marker must be on the items before ``-m`` deselects by it. The hook sees
# every collected item, not only this directory's.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="package")
def cluster():
    """The pool tier's one cluster (the start-up retry is :func:`init_local`'s). Package
    scope: it is shut down when the tier's last module is done, before the system tier's
    modules start clusters of their own."""
    import ray

    context = init_local()
    yield Path(context.address_info["session_dir"])
    ray.shutdown()


_names = itertools.count()


@pytest.fixture
def judge_name(request: pytest.FixtureRequest) -> str:
    """A judge actor name of this test's own, for a test that starts a judge itself."""
    return f"judge-{request.node.name[:40]}-{next(_names)}"


@pytest.fixture(scope="module", autouse=True)
def no_judge_left_behind(request: pytest.FixtureRequest):
    yield
    import ray

    if "cluster" not in request.fixturenames or not ray.is_initialized():
        return
    left = [a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "ray_judge"]
    for actor in left:
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
    assert not left, f"{request.module.__name__} left judges running: {left}"
