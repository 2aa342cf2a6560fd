"""Two Ray nodes on this machine: the judge on the head, a rollout worker on the other.

The rollout worker finds the judge by name, scores through it, and follows a switch made
on the head node (override file + ``refresh_backend``) with its very next call, without
asking for the handle again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ray_cluster import prepare_env

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec  # noqa: E402
from ray_judge.selection.override_file import write_override  # noqa: E402

pytestmark = pytest.mark.ray
FAKE = {"litellm": "ray_judge.backends.fake:FakeBackend"}
ONE, TWO = "litellm:fake/one", "litellm:fake/two"


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    prepare_env()  # loopback, no auth token, a per-run RAY_TMPDIR
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    try:
        rollout = nodes.add_node(num_cpus=1, resources={"rollout": 1},
                                 node_ip_address="127.0.0.1")
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes.head_node.node_id, rollout.node_id
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def judge(cluster, tmp_path_factory):
    path = tmp_path_factory.mktemp("multinode") / ".judge_backend"
    env = {"LLM_JUDGE_NAME": ONE, "LLM_JUDGE_BACKEND_FILE": str(path),
           "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_RESERVOIR_SIZE": "0"}
    handle = ray_judge.start_judge(env=env, backend_registry=FAKE)
    yield handle, path
    ray_judge.stop_judge()


@ray.remote(num_cpus=0, resources={"rollout": 1})
class RolloutWorker:
    """What a training job runs on its rollout nodes: it knows only the judge's name."""

    def __init__(self) -> None:
        self.judge = ray.get_actor("judge", namespace="ray_judge")

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def score(self, tag: str) -> list[tuple[str, bool, str | None]]:
        one = ray.get(self.judge.score.remote("What is 2+2?", f"4 ({tag})", reference="4"))
        many = ray.get(self.judge.score_batch.remote(
            [{"prompt": "Name a prime.", "response": f"{i} ({tag})", "metadata": i}
             for i in range(5)]))
        assert [v.metadata for v in many] == list(range(5))
        return [(v.backend, v.ok, v.error) for v in (one, *many)]


def test_the_nodes_are_two_and_listen_on_loopback(cluster) -> None:
    head, rollout = cluster
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    assert set(nodes) == {head, rollout}
    assert {n["NodeManagerAddress"] for n in nodes.values()} == {"127.0.0.1"}
    assert nodes[rollout]["Resources"].get("rollout") == 1
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_judge_lives_on_the_head_node(cluster, judge) -> None:
    head, _ = cluster
    handle, _ = judge
    status = ray.get(handle.status.remote())
    assert status["node_id"] == head
    assert status["workers"] == 2 and all(w["alive"] for w in ray.get(
        handle.workers_info.remote()))


def test_rollout_worker_on_the_other_node_scores_and_follows_a_switch(cluster, judge) -> None:
    head, rollout = cluster
    handle, path = judge
    worker = RolloutWorker.remote()
    assert ray.get(worker.node_id.remote()) == rollout != head

    before = ray.get(worker.score.remote("before"))
    assert before == [(ONE, True, None)] * 6

    # The switch, on the head node where the override file lives.
    write_override(Path(path), BackendSpec.parse(TWO))
    assert ray.get(handle.refresh_backend.remote())["backend"] == TWO

    after = ray.get(worker.score.remote("after"))
    assert after == [(TWO, True, None)] * 6
    counts = ray.get(handle.status.remote())["counts"]
    assert counts[ONE]["ok"] >= 6 and counts[TWO]["ok"] >= 6
