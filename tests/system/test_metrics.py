"""The judge's metrics, read back from the node's Prometheus endpoint as a dashboard would.

``ray.util.metrics`` values recorded in the judge actor reach the node's metrics agent
every ``metrics_report_interval_ms`` and are served, prefixed ``ray_``, at
``http://<node>:<MetricsExportPort>/metrics``; the Ray dashboard's metrics view reads the
same endpoint through Prometheus. The agent runs without the dashboard
(``include_dashboard=False`` still starts it, with Ray's default extras), so this cluster
has none.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")
parser = pytest.importorskip("prometheus_client.parser")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec, Status, Verdict  # noqa: E402
from ray_judge.selection.override_file import write_override  # noqa: E402

pytestmark = pytest.mark.ray
FAKE = {"litellm": "ray_judge.backends.fake:FakeBackend"}
ONE, TWO = "litellm:fake/one", "litellm:fake/two"
WAIT_S = 60.0
#: Ray 2.60 drops a gauge from the endpoint about 20 s after it was last set (measured
#: with report intervals of 1 s and 10 s); the judge must keep its gauges alive.
GAUGE_LIFETIME_S = 20.0
LAST_SWITCH: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster():
    init_local(_system_config={"metrics_report_interval_ms": 1000})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def judge(cluster, tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / ".judge_backend"
    # No re-judging after the switches here: the gauges must show only these requests
    # (the shift metrics are checked in test_shift_pool.py).
    env = {"LLM_JUDGE_NAME": ONE, "LLM_JUDGE_BACKEND_FILE": str(path),
           "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_RESERVOIR_SIZE": "0"}
    handle = ray_judge.start_judge(env=env, backend_registry=FAKE)
    yield handle, path
    ray_judge.stop_judge()


def scrape() -> dict[str, dict[tuple, float]]:
    """``{sample name: {labels we care about: value summed over reporters}}``."""
    port = ray.nodes()[0]["MetricsExportPort"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
    for family in parser.text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.startswith("ray_judge_"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                      if k in ("backend", "status", "direction", "le")))
                out[sample.name][labels] += sample.value
    return out


def scrape_until(predicate, what: str) -> dict[str, dict[tuple, float]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        metrics = scrape()
        if predicate(metrics):
            return metrics
        assert time.monotonic() < deadline, f"metrics never showed {what}: {dict(metrics)}"
        time.sleep(0.5)


def value(metrics, name: str, **labels: str) -> float | None:
    return metrics.get(name, {}).get(tuple(sorted(labels.items())))


def test_verdicts_switches_and_load_reach_the_metrics_endpoint(judge) -> None:
    handle, path = judge
    served_one = ray.get(handle.score_batch.remote(
        [{"prompt": "p", "response": f"one {i}"} for i in range(20)]))
    served_one += [ray.get(handle.score.remote("p", f"single {i}")) for i in range(4)]
    served_one.append(ray.get(handle.score.remote("p", "one 0")))  # a cache hit
    write_override(Path(path), BackendSpec.parse(TWO))
    ray.get(handle.refresh_backend.remote())
    served_two = ray.get(handle.score_batch.remote(
        [{"prompt": "p", "response": f"two {i}"} for i in range(10)]))
    assert [v.backend for v in served_one] == [ONE] * 25 and all(v.ok for v in served_one)
    assert [v.backend for v in served_two] == [TWO] * 10 and all(v.ok for v in served_two)
    assert served_one[-1].cached

    metrics = scrape_until(
        lambda m: (value(m, "ray_judge_requests_total", backend=ONE, status="ok"),
                   value(m, "ray_judge_requests_total", backend=TWO, status="ok")) == (25, 10),
        "25 verdicts of fake/one and 10 of fake/two")
    assert set(metrics["ray_judge_requests_total"]) == {
        (("backend", ONE), ("status", "ok")), (("backend", TWO), ("status", "ok"))}
    # Latency of every verdict that called a backend (the cache hit did not).
    assert value(metrics, "ray_judge_latency_seconds_count", backend=ONE) == 24
    assert value(metrics, "ray_judge_latency_seconds_count", backend=TWO) == 10
    assert value(metrics, "ray_judge_latency_seconds_bucket", backend=ONE, le="+Inf") == 24
    assert value(metrics, "ray_judge_latency_seconds_sum", backend=ONE) > 0
    assert value(metrics, "ray_judge_cache_hits_total") == 1
    assert value(metrics, "ray_judge_backend_switches_total") == 1
    # Exported at 0 before the first one, so rate() sees the first failover of a run.
    assert value(metrics, "ray_judge_failovers_total") == 0
    assert value(metrics, "ray_judge_current_backend", backend=TWO) == 1
    assert value(metrics, "ray_judge_current_backend", backend=ONE) == 0
    assert value(metrics, "ray_judge_tokens_total", backend=ONE, direction="input") > 0
    assert value(metrics, "ray_judge_queued") == 0
    # Nothing is in flight any more: the gauge must say so, not the last busy value.
    assert value(metrics, "ray_judge_in_flight", backend=ONE) == 0
    assert value(metrics, "ray_judge_in_flight", backend=TWO) == 0

    status = ray.get(handle.status.remote())
    assert status["total"] == 35 and status["switches"] == 1


def test_in_flight_gauge_shows_requests_being_served(judge) -> None:
    handle, path = judge
    write_override(Path(path), BackendSpec.parse("litellm:fake/slow@4"))
    ray.get(handle.refresh_backend.remote())
    ref = handle.score_batch.remote([{"prompt": "p", "response": f"slow {i}"}
                                     for i in range(6)])
    metrics = scrape_until(
        lambda m: value(m, "ray_judge_in_flight", backend="litellm:fake/slow@4") == 6,
        "6 requests in flight on fake/slow@4")
    assert value(metrics, "ray_judge_current_backend", backend="litellm:fake/slow@4") == 1
    assert all(v.ok for v in ray.get(ref, timeout=WAIT_S))
    LAST_SWITCH["at"] = time.monotonic()  # the last dispatch set the gauges for the last time
    scrape_until(lambda m: value(m, "ray_judge_in_flight", backend="litellm:fake/slow@4") == 0,
                 "the in-flight gauge back at 0")


def test_gauges_outlive_an_idle_spell(judge) -> None:
    """A dashboard must show the current backend (and 0 in flight) while the pool idles,
    not "no data" once Ray has forgotten a gauge nobody set for a while."""
    assert "at" in LAST_SWITCH, "runs after the in-flight test, on its idle judge"
    deadline = LAST_SWITCH["at"] + GAUGE_LIFETIME_S + 3.0
    while time.monotonic() < deadline:
        metrics = scrape()
        assert value(metrics, "ray_judge_current_backend", backend="litellm:fake/slow@4") == 1
        assert value(metrics, "ray_judge_in_flight", backend="litellm:fake/slow@4") == 0
        assert value(metrics, "ray_judge_queued") == 0
        time.sleep(1.0)


def test_a_group_calls_retries_are_counted_once_not_per_member(cluster) -> None:
    from ray_judge.pool.metrics import JudgeMetrics

    backend = "litellm:fake/group-retried"
    # one call of a group of 4: one transport retry and one correction turn, on every member
    members = [Verdict(score=0.5, status=Status.OK, backend=backend, attempts=3,
                       format_retries=1, extra={"group": {"size": 4, "index": i,
                                                          "position": position}})
               for i, position in enumerate((2, 4, 1, 3))]
    recorder = JudgeMetrics()
    for verdict in members:
        recorder.record(verdict)
    metrics = scrape_until(
        lambda m: value(m, "ray_judge_requests_total", backend=backend, status="ok") == 4
        and value(m, "ray_judge_retries_total", backend=backend) is not None,
        "the group's 4 verdicts and its retries")
    assert value(metrics, "ray_judge_retries_total", backend=backend) == 1
    assert value(metrics, "ray_judge_format_retries_total", backend=backend) == 1
