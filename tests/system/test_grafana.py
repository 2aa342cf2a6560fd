"""Every query of the shipped Grafana dashboard, run through a real Prometheus.

Debian's ``prometheus`` (``apt-get install -y prometheus``; ``.ci/run`` installs it)
scrapes the Ray node's metrics export port every second while a real judge serves real
LiteLLM calls to :class:`FakeLLMServer`: successes, a cache hit, a slow spell with a
queue, 429s, 5xx, hangs (timeouts), answers without a score, retries, a switch by the
override file, a failover on an auth error and auth errors no fallback can absorb.
Then every PromQL expression of every panel and annotation, read from the JSON the
package ships, with the template variables filled as Grafana fills them, goes to
Prometheus's HTTP API the way Grafana sends it (``query_range`` for graphs, ``query`` for
instant stats). Each must return at least one series, and where the test knows what it
caused, the value it caused. A query that returns nothing is a broken panel.

Each failure kind happens in two rounds with a scrape between them: Prometheus's
``rate()`` only sees a counter grow from a sample it already has, and a label set (say
``status="timeout"``) first appears already at 1.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import waiting
from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import BackendSpec, JudgeDefinition, Status  # noqa: E402
from ray_judge.monitoring.dashboard import dashboard, panel_queries, substitute  # noqa: E402
from ray_judge.selection.override_file import write_override  # noqa: E402
from ray_judge.testing import Behaviour, FakeLLMServer  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.ray, pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed "
                       "(apt-get install -y prometheus; .ci/run installs it)"),
]

A, C, B = "litellm:openai/gpt-4o-mini", "litellm:openai/gpt-4.1-mini", "litellm:openai/gpt-4o"
#: A second judge's backend, on a fake of its own, that hedges its late calls.
D = "litellm:hosted_vllm/hedged-judge"
C_MODEL = "gpt-4.1-mini"
WAIT_S = 90.0
#: What Grafana puts in $__rate_interval for a 1 s scrape interval and 1 s steps is 4 s;
#: a little more keeps a one-off event visible for a few steps on a loaded machine.
RATE_INTERVAL = "10s"
FAILURES = ("rate_limited", "backend_error", "timeout", "parse_error")
#: Panels drawn from canaries, proven by their own judge (test_the_canary_panels_...).
CANARY_PANELS = ("Canary pass rate by kind", "Canaries judged and their cost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


wait_for = functools.partial(waiting.wait_for, timeout=WAIT_S, every=0.25)


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own data dir, scraping ``targets``."""

    def __init__(self, root: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = root / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": targets}]}],
        }))
        self.log = open(root / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, "prometheus to be ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited: {self.logs()}"
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=30).read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path} {params}: HTTP {exc.code}: {exc.read()!r}") from None
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        return self.api("query", query=expr, time=at or time.time())["result"]

    def value(self, expr: str) -> float:
        result = self.instant(expr)
        return float(result[0]["value"][1]) if result else math.nan

    def last_scrape(self) -> float:
        """When the oldest target was last scraped (epoch seconds)."""
        return self.value("min(timestamp(up))")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster():
    init_local(_system_config={"metrics_report_interval_ms": 1000})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def prometheus(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("prometheus")
    targets = [f"127.0.0.1:{n['MetricsExportPort']}" for n in ray.nodes() if n["Alive"]]
    server = Prometheus(root, targets)
    yield server
    server.stop()


def reply(body: dict[str, Any]) -> str:
    """Scores that vary with the response (so a rank correlation exists), one point higher
    from C's model (so the switch to C shifts them)."""
    found = re.search(r"(?:answer|slow) (\d+)", json.dumps(body.get("messages")))
    score = int(found.group(1)) % 9 if found else 5
    return f"Fine.\nSCORE: {score + (1 if body.get('model') == C_MODEL else 0)}"


@pytest.fixture(scope="module")
def provider():
    with FakeLLMServer(reply=reply) as server:
        yield server


@pytest.fixture(scope="module")
def judge(cluster, provider, tmp_path_factory):
    path = tmp_path_factory.mktemp("grafana") / ".judge_backend"
    env = {
        "LLM_JUDGE_NAME": A, "LLM_JUDGE_FALLBACK": B, "LLM_JUDGE_BACKEND_FILE": str(path),
        "LLM_JUDGE_NUM_WORKERS": "1", "LLM_JUDGE_TIMEOUT": "4", "LLM_JUDGE_DEADLINE": "12",
        "LLM_JUDGE_MAX_ATTEMPTS": "2", "LLM_JUDGE_BACKOFF": "0.05",
        "LLM_JUDGE_MAX_BACKOFF": "0.2", "LLM_JUDGE_PROBE_INTERVAL": "600",
        "LLM_JUDGE_FAILOVER_RATE_LIMITED": "1000000", "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM": "2",
        # Each scripted behaviour meets one attempt: no hedges (the second judge has them).
        "LLM_JUDGE_HEDGE": "off",
        "OPENAI_API_BASE": f"{provider.url}/v1", "OPENAI_API_KEY": "sk-grafana-test-dummy",
        # Far above what the run costs: the panel shows spend under both limits.
        "LLM_JUDGE_BUDGET_USD": "1000/h,5000",
        # Canaries would take scripted answers meant for the run's calls: they have their
        # own judge below.
        "LLM_JUDGE_CANARY_SHARE": "0",
    }
    # A judge that asks once more when an answer does not parse (a correction turn).
    fixer = JudgeDefinition(name="fixer", correction_turns=1)
    handle = ray_judge.start_judge(env=env, judges=[fixer])
    yield handle, path
    ray_judge.stop_judge()


@pytest.fixture(scope="module")
def hedging_judge(cluster, tmp_path_factory):
    """A second judge (metrics add up across judges) whose late calls are hedged, and
    which validates its backend on labelled cases when it starts."""
    cases = tmp_path_factory.mktemp("cases") / "cases.jsonl"
    cases.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}",
                                         "pass": i % 2 == 0}) + "\n" for i in range(4)))
    with FakeLLMServer(reply=panel_reply) as server:
        env = {"LLM_JUDGE_NAME": D, "LLM_JUDGE_NUM_WORKERS": "1",
               "LLM_JUDGE_VALIDATION_FILE": str(cases),
               # The panel's priced members answer from the same fake.
               "OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-panel-dummy",
               "LLM_JUDGE_BACKEND_FILE": str(tmp_path_factory.mktemp("hedge") / ".jb"),
               "LLM_JUDGE_HEDGE_AFTER": "0.5", "LLM_JUDGE_HEDGE_SHARE": "1",
               "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM": "2", "LLM_JUDGE_MAX_ATTEMPTS": "1",
               "HOSTED_VLLM_API_BASE": f"{server.url}/v1", "HOSTED_VLLM_API_KEY": "dummy"}
        handle = ray_judge.start_judge(name="judge_hedging", env=env, judges=[TRIO])
        yield handle, server
        ray_judge.stop_judge(name="judge_hedging")


#: A panel of three (the serving backend and two priced models) that escalates when they
#: disagree: its agreement, escalation rate and members' cost and call shares.
TRIO = JudgeDefinition(name="trio", panel=("@current", "litellm:openai/gpt-4.1",
                                           "litellm:openai/gpt-4.1-nano"),
                       escalate_to="litellm:openai/o4-mini", escalate_when="spread > 0.3")


def panel_reply(body: dict[str, Any]) -> str:
    """Default answers, except a panel item's: scores that vary with the item, and a
    nano member that disagrees on the items marked so."""
    text = json.dumps(body.get("messages"))
    found = re.search(r"panel item (\d+)", text)
    if found is None:
        return "The response matches the reference.\nSCORE: 8"
    score = 2 + int(found.group(1)) % 7
    if body.get("model") == "gpt-4.1-nano" and "disagree" in text:
        score = 1 if score >= 5 else 9  # at least 0.4 away: past the 0.3 spread
    return f"Judged.\nSCORE: {score}"


def drive_panel(judge: Any) -> None:
    """Twelve panel verdicts a round, a third of them escalated, in two rounds."""
    for round_ in (1, 2):
        items = [{"prompt": "p", "response": f"panel item {i} round {round_}"
                  + (" disagree" if i % 3 == 0 else ""), "judge": "trio"} for i in range(12)]
        verdicts = ray.get(judge.score_batch.remote(items), timeout=WAIT_S)
        assert all(v.ok for v in verdicts), verdicts
        assert sum(bool(v.extra.get("escalated")) for v in verdicts) == 4, verdicts
        ray.get(judge.status.remote())  # the agreement gauges are refreshed
        time.sleep(2.5)  # a scrape between the rounds


def drive_hedges(judge: Any, server: FakeLLMServer) -> None:
    """One late call that its hedge wins, twice; then two late calls holding both slots,
    whose hedges the in-flight limit refuses."""
    for round_ in (1, 2):
        server.slow(f"late {round_}", 30.0)
        won = ray.get(judge.score.remote("p", f"late {round_}"), timeout=WAIT_S)
        assert won.ok and won.extra["hedged"]["winner"] == "hedge", won
        for i in range(2):
            server.slow(f"busy {round_}{i}", 1.5)
        busy = ray.get(judge.score_batch.remote(
            [{"prompt": "p", "response": f"busy {round_}{i}"} for i in range(2)]),
            timeout=WAIT_S)
        assert all(v.ok and "hedged" not in v.extra for v in busy), busy
        time.sleep(2.5)  # a scrape between the rounds
    refused = ray.get(judge.status.remote())["hedging"]["refused"]
    assert refused == {"in_flight": 4}, refused


class Run:
    """Drives the judge one call at a time, so each scripted behaviour meets one attempt."""

    def __init__(self, judge: Any, provider: FakeLLMServer, prometheus: Prometheus) -> None:
        self.judge, self.provider, self.prometheus = judge, provider, prometheus
        self.n = 0

    def score(self, *behaviours: Behaviour, response: str | None = None):
        self.provider.script(*behaviours)
        self.n += 1
        return ray.get(self.judge.score.remote(
            "What is 2+2?", response or f"answer {self.n}", "4"), timeout=WAIT_S)

    def seen(self, expr: str, expected: float) -> None:
        """Wait until Prometheus has scraped ``expr == expected`` (the judge reported it)."""
        wait_for(lambda: self.prometheus.value(expr) == expected,
                 f"prometheus to show {expr} == {expected} "
                 f"(now {self.prometheus.value(expr)})")

    def two_scrapes(self) -> None:
        start = time.time()
        wait_for(lambda: self.prometheus.last_scrape() > start + 1.0, "two more scrapes")


def count(status: str, backend: str | None = None) -> str:
    where = f'status="{status}"' + (f', backend="{backend}"' if backend else "")
    return f"sum(ray_judge_requests_total{{{where}}})"


def shift_done(judge: Any, new: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        report = ray.get(judge.status.remote())["shift"].get("default")
        return report if report and report["new"] == new and report["done"] else None

    return wait_for(done, f"the shift measurement on {new}")


def drive(run: Run, judge: Any, path: Path, hedging: tuple[Any, FakeLLMServer]
          ) -> dict[str, float]:
    """The scenario; returns the moments the checks look at."""
    prom = run.prometheus
    wait_for(lambda: prom.instant("ray_judge_current_backend") and
             prom.instant("ray_judge_failovers_total"), "the judge's first gauges and counters")
    marks = {"start": time.time()}
    # Successes, a cache hit, in two rounds.
    for round_ in (1, 2):
        verdicts = [run.score() for _ in range(5)]
        assert all(v.ok and v.backend == A for v in verdicts), verdicts
        run.seen(count("ok", A), 5 * round_)
    hit = run.score(response="answer 1")
    assert hit.ok and hit.cached
    # Provider prompt caching: a task prompt over OpenAI's 1,024 tokens, so the fake
    # OpenAI API serves later responses to it from its cache (cached_tokens).
    long_task = "Prove it step by step, citing each lemma. " * 250
    for round_ in (1, 2):
        for i in range(2):
            verdict = ray.get(judge.score.remote(long_task, f"answer {round_}{i}", "4"),
                              timeout=WAIT_S)
            assert verdict.ok, verdict
        run.two_scrapes()
    prompt_cache = ray.get(judge.status.remote())["prompt_cache"][A]
    assert 0 < prompt_cache["hit_ratio"] < 1 and prompt_cache["write_tokens"] == 0, prompt_cache
    # A slow spell: two in flight (the litellm limit), four queued.
    run.provider.script(*[Behaviour.ok(delay_s=2.5)] * 6)
    slow = judge.score_batch.remote([{"prompt": "p", "response": f"slow {i}"}
                                     for i in range(6)])
    wait_for(lambda: prom.value("sum(ray_judge_queued)") >= 1, "a queue in prometheus")
    marks["busy"] = time.time()
    slow = ray.get(slow, timeout=WAIT_S)
    assert all(v.ok for v in slow), [(v.status, v.error) for v in slow]

    # Every failure kind, twice, and a retry that succeeds.
    for round_ in (1, 2):
        assert run.score(Behaviour.error(429, "slow down", retry_after=0.1),
                         Behaviour.error(429, "slow down", retry_after=0.1)).status \
            is Status.RATE_LIMITED
        assert run.score(Behaviour.error(500, "boom"), Behaviour.error(503, "busy")).status \
            is Status.BACKEND_ERROR
        assert run.score(Behaviour.hang(), Behaviour.hang()).status is Status.TIMEOUT
        assert run.score(Behaviour.ok("I cannot decide.")).status is Status.PARSE_ERROR
        retried = run.score(Behaviour.error(429, "slow down", retry_after=0.1), Behaviour.ok())
        assert retried.ok and retried.attempts == 2
        run.provider.script(Behaviour.ok("I cannot decide."), Behaviour.ok())
        corrected = ray.get(judge.score.remote("What is 2+2?", f"corrected {round_}", "4",
                                               judge="fixer"), timeout=WAIT_S)
        assert corrected.ok and corrected.format_retries == 1, corrected
        run.seen(count("timeout", A), round_)
        run.seen(count("parse_error", A), round_)
    marks["failures"] = time.time()

    # A person switches to C. The judge re-judges its sample of A's requests on C to
    # measure the shift: let it finish before scripting C's answers again.
    write_override(path, BackendSpec.parse(C))
    ray.get(judge.refresh_backend.remote())
    assert all(run.score().backend == C for _ in range(3))
    shift_done(judge, C)
    run.seen(count("ok", C), 3)
    marks["switch"] = time.time()

    # C's key is refused: the request fails over to the fallback B, which serves on.
    moved = run.score(Behaviour.error(401, "invalid x-api-key"))
    assert moved.ok and moved.backend == B, moved
    assert all(run.score().backend == B for _ in range(3))
    shift_done(judge, B)
    run.seen("sum(ray_judge_failovers_total)", 1)
    marks["failover"] = time.time()
    # Then B's key is refused too: nothing left to fail over to, the caller sees it.
    refused = run.score(Behaviour.error(401, "invalid x-api-key"))
    assert refused.status is Status.AUTH_ERROR, refused
    run.seen(count("auth_error"), 1)
    status = ray.get(judge.status.remote())
    assert [s["why"] for s in status["recent_switches"]] == ["switch", "failover"], status
    drive_hedges(*hedging)
    drive_panel(hedging[0])
    run.two_scrapes()
    marks["end"] = time.time()
    return marks


def series_key(series: dict[str, Any], *labels: str) -> tuple[str, ...]:
    return tuple(series["metric"].get(label, "") for label in labels)


def values(series: dict[str, Any]) -> list[float]:
    points = series.get("values") or [series["value"]]
    return [float(v) for _, v in points if not math.isnan(float(v))]


def peak(result: list[dict[str, Any]], **labels: str) -> float:
    """The largest value of the series whose labels match, over the whole range."""
    out = [max(values(s), default=math.nan) for s in result
           if all(s["metric"].get(k) == v for k, v in labels.items())]
    assert out, f"no series with {labels} in {[s['metric'] for s in result]}"
    return max(out)


def test_every_dashboard_query_returns_what_the_run_caused(judge, provider, prometheus,
                                                           hedging_judge):
    handle, path = judge
    marks = drive(Run(handle, provider, prometheus), handle, path, hedging_judge)
    board = dashboard()

    # The template variables, resolved the way Grafana resolves them.
    sessions = prometheus.api("label/SessionName/values",
                              **{"match[]": "ray_judge_current_backend"})
    backends = prometheus.api("label/backend/values",
                              **{"match[]": 'ray_judge_current_backend{SessionName=~".+"}'})
    assert len(sessions) == 1 and set(backends) == {A, B, C, D}, (sessions, backends)
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "SessionName", "backend"}
    fill = {"SessionName": sessions[0], "backend": ".+", "__rate_interval": RATE_INTERVAL,
            "__range": f"{math.ceil(marks['end'] - marks['start']) + 5}s"}

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for query in panel_queries(board):
        if query.panel in CANARY_PANELS:  # their own judge: test_the_canary_panels_...
            continue
        expr = substitute(query.expr, fill)
        if query.instant:
            result = prometheus.instant(expr, marks["end"])
        else:
            result = prometheus.api("query_range", query=expr, start=marks["start"] - 5,
                                    end=marks["end"], step="1s")["result"]
        assert result, f"panel {query.panel!r} ({query.ref}) is broken: {expr} returned nothing"
        assert any(values(s) for s in result), f"panel {query.panel!r}: only NaN from {expr}"
        results[(query.panel, query.ref)] = result

    def one(panel: str, ref: str = "A") -> float:
        (series,) = results[(panel, ref)]
        return values(series)[-1]

    # Overview stats over the run (increase() estimates, so bounds, not exact counts).
    assert one("Verdicts in range") > 10
    assert 0 < one("Failed in range") < 1
    assert one("Backend changes in range") >= 1.5  # a switch and a failover
    assert one("Failovers in range") >= 0.9
    assert one("In flight now") == 0 and one("Queued now") == 0
    # The slow spell, as the stats would have shown it then.
    at_busy = prometheus.instant(substitute(
        next(q.expr for q in panel_queries(board) if q.panel == "Queued now"), fill),
        marks["busy"])
    assert float(at_busy[0]["value"][1]) >= 1

    timeline = results[("Current backend", "A")]
    assert {series_key(s, "backend") for s in timeline} == {(A,), (B,), (C,), (D,)}
    assert peak(timeline, backend=A) == 1 and values(
        next(s for s in timeline if s["metric"]["backend"] == A))[-1] == 0

    per_status = results[("Verdicts/s by backend and status", "A")]
    for status in ("ok", *FAILURES):
        assert peak(per_status, backend=A, status=status) > 0, status
    assert peak(per_status, backend=C, status="ok") >= 0
    assert peak(per_status, backend=B, status="ok") >= 0
    assert {series_key(s, "status") for s in per_status} >= {(s,) for s in (
        "ok", "auth_error", *FAILURES)}

    share = results[("Failure share by status", "A")]
    for status in FAILURES:  # the 429s, 5xx, hangs and unparseable answers it injected
        assert 0 < peak(share, status=status) <= 1, status
    assert "ok" not in {s["metric"].get("status") for s in share}

    # Hangs cost 2 x 4 s: the tail shows them; the median of quick answers is small.
    assert peak(results[("Latency percentiles", "C")], backend=A) > 1.0
    assert peak(results[("Latency percentiles", "A")], backend=A) > 0

    assert peak(results[("In flight and queued", "A")], backend=A) == 2
    assert peak(results[("In flight and queued", "B")]) >= 1
    assert peak(results[("Retries/s", "A")], backend=A) > 0
    assert peak(results[("Retries/s", "B")], backend=A) > 0  # the correction turns
    assert peak(results[("Cache hit rate", "A")]) > 0
    tokens = results[("Tokens per minute", "A")]
    assert peak(tokens, backend=A, direction="input") > 0
    assert peak(tokens, backend=A, direction="output") > 0
    assert peak(results[("Cost per minute", "A")], backend=A) > 0
    assert 0 < peak(results[("Provider prompt-cache hit ratio", "A")], backend=A) < 1
    spend = results[("Spend budget", "A")]  # billed: LiteLLM priced the fake's tokens
    spent = ray.get(handle.status.remote())["budget"]
    assert 0 < peak(spend, window="run") == pytest.approx(spent["spent_usd"], rel=1e-3)
    assert 0 < peak(spend, window="hour") <= peak(spend, window="run")
    limits = results[("Spend budget", "B")]
    assert (peak(limits, window="hour"), peak(limits, window="run")) == (1000, 5000)

    # Scores as the backends gave them; C's model answers one point (0.1) higher.
    scores = results[("Score by backend and judge", "A")]
    assert 0 < peak(scores, backend=A, judge="default") <= 1
    assert {series_key(s, "backend") for s in scores} >= {(A,), (C,)}
    assert peak(results[("Score by backend and judge", "C")], backend=A) <= 1
    shift = results[("Score shift since the latest switch", "A")]
    assert peak(shift, judge="default") > 0.05, shift  # A -> C: +0.1 on the same requests
    assert 0 < peak(results[("Score shift since the latest switch", "B")], judge="default") <= 1
    # Groups and comparisons were not used: their counters exist, at 0.
    assert peak(results[("Backend calls saved by groups", "A")]) == 0
    assert peak(results[("Split groups and inconsistent comparisons", "B")]) == 0

    # Hedged calls: D's late calls, won by their hedges; the in-flight limit's refusals.
    hedges = results[("Hedged calls per minute", "A")]
    assert peak(hedges, winner="hedge") > 0
    assert peak(results[("Hedged calls per minute", "B")], reason="in_flight") > 0
    assert 0 < peak(results[("Hedge share and what losing calls cost", "A")]) <= 1
    assert peak(results[("Hedge share and what losing calls cost", "B")]) >= 0
    # The trio panel: agreement, a third escalated, members' cost and call shares.
    agreement = results[("Panel agreement", "A")]
    assert {series_key(s, "statistic") for s in agreement} >= {("alpha",),
                                                               ("effective_judges",)}
    assert 0 < peak(results[("Panel verdicts and escalation rate", "B")], judge="trio") < 1
    shares = results[("Panel members' share of cost and calls", "B")]
    assert {series_key(s, "member") for s in shares} >= {("litellm:openai/gpt-4.1",),
                                                         ("escalation",)}
    assert 0 < peak(results[("Panel members' share of cost and calls", "A")],
                    judge="trio") <= 1
    # D's validation on the labelled cases when it started (the fake passes every case).
    figures = results[("Validation figures by backend", "A")]
    assert peak(figures, backend=D, metric="ok") == 1
    assert peak(figures, backend=D, metric="accuracy") == 0.5
    assert peak(results[("Validation passed (1) or fell short (0)", "A")], backend=D) == 1

    assert peak(results[("annotation: Backend changes", "")]) > 0
    assert peak(results[("annotation: Failovers", "")]) > 0


def gullible(body: dict[str, Any]) -> str:
    """Top score to the master keys ("Thought process:" and the rest), else by the
    answer's number."""
    messages = json.dumps(body.get("messages"))
    found = re.search(r"answer (\d+)", messages)
    return "Great.\nSCORE: 10" if found is None else f"Fine.\nSCORE: {int(found.group(1)) % 9}"


def test_the_canary_and_length_panels_show_what_the_canaries_caused(cluster, prometheus):
    """A second judge, at canary share 0.5, on a model every known-bad answer fools: the
    canary panels show a pass rate of 1 for each kind, its Wilson lower bound, the counts
    by result and their cost; the length panels the correlation and the quartiles."""
    from ray_judge.quality.canaries import wilson

    with FakeLLMServer(reply=gullible) as fooled:
        env = {"LLM_JUDGE_NAME": A, "LLM_JUDGE_NUM_WORKERS": "1",
               "LLM_JUDGE_CANARY_SHARE": "0.5", "LLM_JUDGE_LENGTH_BIAS_MIN": "10",
               "OPENAI_API_BASE": f"{fooled.url}/v1", "OPENAI_API_KEY": "sk-grafana-dummy"}
        handle = ray_judge.start_judge(name="judge_canary_panels", env=env)
        try:
            start = time.time()
            verdicts = ray.get(handle.score_batch.remote([
                {"prompt": "What is 2+2?", "response": f"answer {i} " + "x" * i}
                for i in range(64)]), timeout=WAIT_S)
            assert all(v.ok for v in verdicts)
            canaries = wait_for(lambda: (c := ray.get(handle.status.remote())["canaries"])[
                "judged"] == 32 and c, "32 canaries judged")
            wait_for(lambda: prometheus.value(
                'sum(ray_judge_canaries_total{result="passed"})') == 32 and prometheus.value(
                'count(ray_judge_canary_pass_rate{bound="low"})') == 8 and prometheus.value(
                "count(ray_judge_length_quartile_score)") >= 4,
                "prometheus to show the canaries")
            seen = time.time()  # two more scrapes: the range's last step sees them too
            wait_for(lambda: prometheus.last_scrape() > seen + 1.0, "two more scrapes")
            end = time.time()
        finally:
            ray_judge.stop_judge(name="judge_canary_panels")
    session = prometheus.api("label/SessionName/values",
                             **{"match[]": "ray_judge_canaries_total"})[0]
    fill = {"SessionName": session, "backend": ".+", "__rate_interval": RATE_INTERVAL}
    results = {}
    for query in panel_queries(dashboard()):
        if not ("canar" in query.expr or "length" in query.expr):
            continue
        result = prometheus.api("query_range", query=substitute(query.expr, fill),
                                start=start - 5, end=end, step="1s")["result"]
        assert result, f"panel {query.panel!r} ({query.ref}) is broken: {query.expr}"
        results[(query.panel, query.ref)] = result
    assert {panel for panel, _ in results} >= {*CANARY_PANELS, "Length-score correlation",
                                               "Mean score by length quartile"}
    rate, low = results[("Canary pass rate by kind", "A")], results[
        ("Canary pass rate by kind", "B")]
    assert {series_key(s, "kind") for s in rate} == {(k,) for k in canaries["judges"][
        "default"][A]} and len(rate) == 8
    assert all(values(s)[-1] == 1.0 for s in rate)
    assert all(values(s)[-1] == pytest.approx(wilson(4, 4)[0], abs=1e-3) for s in low)
    by_result = results[("Canaries judged and their cost", "A")]
    assert [values(s)[-1] for s in by_result] == [32]  # all passed: none caught or failed
    assert by_result[0]["metric"]["result"] == "passed"
    cost = peak(results[("Canaries judged and their cost", "B")], backend=A)
    assert cost == pytest.approx(canaries["cost_usd"], rel=1e-3) and cost > 0
    correlation = results[("Length-score correlation", "A")]
    assert -1 <= peak(correlation, judge="default", backend=A) <= 1
    quartiles = results[("Mean score by length quartile", "A")]
    assert {series_key(s, "quartile") for s in quartiles} == {("1",), ("2",), ("3",), ("4",)}
