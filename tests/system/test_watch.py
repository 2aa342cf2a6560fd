"""``ray-judge watch``: the frame it draws (no cluster), then the real thing in a real
terminal (tmux) against a real judge: a switch shows within two redraws, a 429 storm
and a failover show, the judge going away and coming back is said, Ctrl-C exits cleanly.

Set ``RJ_WATCH_SCREENSHOT=docs/watch.png`` (relative to the repository) to also render
the captured pane to a PNG with headless chromium (the README's screenshot comes from
this run).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from ray_judge.config import JudgeConfig
from ray_judge.monitoring.watch import Poller, render

REPO = Path(__file__).resolve().parents[2]

STATUS: dict[str, Any] = {
    "shift": {"default": {"line": "since 14:02 gpt-4o vs gpt-4.1-mini on 180 pairs: mean "
                                  "+0.31, Spearman 0.72"},
              "agent": {"line": "since 14:03 gpt-4o vs gpt-4.1-mini on 12 pairs"}},
    "backend": "litellm:openai/gpt-4.1-mini", "serving": "litellm:openai/gpt-4o",
    "source": "file", "override_file": "/runs/.judge_backend", "override_problem": None,
    "override_warnings": ["/runs/.judge_backend is writable by group"],
    "in_flight": {"litellm:openai/gpt-4o": 7}, "queued": 12, "workers": 2, "switches": 2,
    "recent_switches": [
        {"at": 1_700_000_000.0, "from": "ccode-4-sonnet", "to": "litellm:openai/gpt-4.1-mini",
         "why": "switch"},
        {"at": 1_700_000_100.0, "from": "litellm:openai/gpt-4.1-mini",
         "to": "litellm:openai/gpt-4o", "why": "failover"}],
    "failover": {"fallbacks": ["litellm:openai/gpt-4o"], "serving": "litellm:openai/gpt-4o",
                 "failovers": 1, "open": {"litellm:openai/gpt-4.1-mini": {
                     "until": 1_700_000_700.0, "reason": "auth_error: bad key",
                     "probing": False}}},
    "cache": {}, "started_at": 1_699_990_000.0, "uptime_s": 10_100.0, "pid": 4242,
    "total": 1234, "counts": {"litellm:openai/gpt-4.1-mini": {"ok": 1000, "rate_limited": 77},
                              "litellm:openai/gpt-4o": {"ok": 157}},
    "latency_p50_s": 0.8, "latency_p95_s": 2.5, "cost_usd": 1.5, "retries": 90, "cached": 12,
}


def text_of(view) -> str:
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(render(view))
    return console.export_text()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_200.0

    def __call__(self) -> float:
        return self.now


def test_a_frame_shows_backend_rate_statuses_load_failover_switches_and_problems():
    answers = [dict(STATUS), {**STATUS, "total": 1254}]
    clock = Clock()
    poller = Poller(JudgeConfig.from_env({}), fetch=lambda: answers.pop(0), clock=clock)
    poller.poll()
    clock.now += 2.0
    out = text_of(poller.poll())
    assert "litellm:openai/gpt-4.1-mini  -> serving fallback litellm:openai/gpt-4o" in out
    assert "10.0/s" in out and "1,254 total" in out  # 20 verdicts in 2 s
    assert "p50 0.80s" in out and "p95 2.50s" in out
    assert "12 queued" in out and "litellm:openai/gpt-4o 7" in out
    assert "OUT (until" in out and "auth_error: bad key" in out
    assert "writable by group" in out
    assert "rate_limited" in out and re.search(r"gpt-4\.1-mini\s+1,000\s+77", out), out
    assert "failover" in out.split("last backend changes")[1]
    assert "2h48m20s" in out  # uptime
    assert "since 14:02 gpt-4o vs gpt-4.1-mini on 180 pairs: mean +0.31" in out  # shift
    assert "judge agent: since 14:03" in out


def test_the_view_says_when_the_judge_goes_away_and_when_it_is_back():
    clock = Clock()
    script: list[Any] = [dict(STATUS), LookupError("no such actor in the cluster"),
                         LookupError("no such actor in the cluster"),
                         {**STATUS, "total": 5, "started_at": clock.now + 3}]

    def fetch() -> dict[str, Any]:
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    poller = Poller(JudgeConfig.from_env({}), fetch=fetch, clock=clock)
    assert "not reachable" not in text_of(poller.poll())
    clock.now += 1
    gone = text_of(poller.poll())
    assert "judge not reachable since" in gone and "no such actor" in gone
    assert "retrying" in gone and "(last known values)" in gone
    clock.now += 5
    assert "(5s)" in text_of(poller.poll())  # how long it has been away
    clock.now += 1
    back = poller.poll()
    out = text_of(back)
    assert "judge back at" in out and "after 6s away" in out and "not reachable" not in out
    assert back.rate is None  # no rate across a restart: its counters began again


# ------------------------------------------------------------------- the real terminal

ray = pytest.importorskip("ray")


def tmux_available() -> bool:
    return shutil.which("tmux") is not None


A, B, C = "litellm:openai/gpt-4o-mini", "litellm:openai/gpt-4o", "litellm:openai/gpt-4.1-mini"
WAIT_S = 90.0


class Pane:
    """One tmux session on its own server socket (nobody else's tmux is touched)."""

    def __init__(self, command: list[str], env: dict[str, str], where: Path) -> None:
        self.socket = str(where / f"tmux-{uuid.uuid4().hex[:8]}")
        line = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *command])
        self.tmux("new-session", "-d", "-s", "w", "-x", "118", "-y", "44",
                  f"{line}; echo EXIT=$?; sleep 600")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True, timeout=30).stdout

    def capture(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-t", "w", *(["-e"] if escapes else []))

    def wait_for(self, predicate, what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while True:
            screen = self.capture()
            if predicate(screen):
                return screen
            assert time.monotonic() < deadline, f"the pane never showed {what}:\n{screen}"
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], check=False,
                       capture_output=True, timeout=30)
        Path(self.socket).unlink(missing_ok=True)


def redraw(screen: str) -> int:
    return int(re.search(r"redraw (\d+)", screen).group(1))


def backend_line(screen: str) -> str:
    return next(line for line in screen.splitlines() if line.strip().startswith("backend"))


@pytest.fixture(scope="module")
def cluster():
    from tests.ray_cluster import init_local

    context = init_local()
    yield context.address_info["address"]
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
def test_watch_in_a_real_terminal(cluster, tmp_path):
    import ray_judge
    from ray_judge.testing import Behaviour, FakeLLMServer

    backend_file = tmp_path / ".judge_backend"
    env = {"LLM_JUDGE_NAME": A, "LLM_JUDGE_FALLBACK": B,
           "LLM_JUDGE_BACKEND_FILE": str(backend_file), "LLM_JUDGE_NUM_WORKERS": "1",
           "LLM_JUDGE_MAX_ATTEMPTS": "1", "LLM_JUDGE_PROBE_INTERVAL": "600",
           "LLM_JUDGE_FAILOVER_RATE_LIMITED": "1000000", "OPENAI_API_KEY": "sk-watch-dummy",
           # The scripted 429s and 401 are for callers' requests, not a canary call.
           "LLM_JUDGE_CANARY_SHARE": "0"}
    shell_env = {"RAY_ADDRESS": cluster, "LLM_JUDGE_BACKEND_FILE": str(backend_file),
                 "TERM": "xterm-256color", "COLUMNS": "118", "LINES": "44"}
    with FakeLLMServer() as provider:
        env["OPENAI_API_BASE"] = f"{provider.url}/v1"
        judge = ray_judge.start_judge(env=env)

        def batch(n: int, tag: str) -> list:
            return ray.get(judge.score_batch.remote(
                [{"prompt": "What is 2+2?", "response": f"{tag} {i}", "reference": "4"}
                 for i in range(n)]), timeout=WAIT_S)

        assert all(v.ok for v in batch(20, "warm"))
        pane = Pane([sys.executable, "-m", "ray_judge.cli", "watch"], shell_env, tmp_path)
        try:
            pane.wait_for(lambda s: "redraw" in s and A in s, "the judge on A")
            # A person switches with the real CLI; the view follows within two redraws.
            switch = subprocess.run(
                [sys.executable, str(REPO / "switch_judge_backend.py"), "litellm",
                 C.removeprefix("litellm:")], env={**os.environ, **shell_env},
                capture_output=True, text=True, timeout=120, check=True)
            assert "Running judge notified" in switch.stdout, switch.stdout
            before = redraw(pane.capture())
            after = pane.wait_for(lambda s: C in backend_line(s), "the switch to C")
            assert redraw(after) - before <= 2, (before, after)

            # The first request on C starts the re-judging of a sample of A's requests on
            # C (the shift after a switch): let it finish, or the scripted 429s go to it.
            assert all(v.ok and v.backend == C for v in batch(1, "on C"))
            shift_done(judge, C)
            # A 429 storm on C, then C's key is refused: failover to B.
            provider.script(*[Behaviour.error(429, "slow down")] * 15)
            storm = [v.status.value for v in batch(15, "storm")]
            assert "rate_limited" in storm and set(storm) <= {"ok", "rate_limited"}, storm
            provider.script(Behaviour.error(401, "invalid x-api-key"))
            assert all(v.ok for v in batch(1, "refused"))
            assert all(v.ok and v.backend == B for v in batch(12, "fallback"))
            screen = pane.wait_for(lambda s: "serving fallback" in s and "OUT" in s,
                                   "the failover")
            assert re.search(r"gpt-4\.1-mini\s+[\d,]+\s+[1-9]", screen), screen  # the 429s
            assert "failover" in screen.split("last backend changes")[1]
            if os.environ.get("RJ_WATCH_SCREENSHOT"):
                screenshot(pane.capture(escapes=True), REPO / os.environ["RJ_WATCH_SCREENSHOT"])

            # The judge goes away and comes back.
            ray_judge.stop_judge()
            pane.wait_for(lambda s: "judge not reachable since" in s, "the judge gone")
            ray_judge.start_judge(env=env)
            pane.wait_for(lambda s: "judge back at" in s and "not reachable" not in s,
                          "the judge back")

            pane.tmux("send-keys", "-t", "w", "C-c")
            done = pane.wait_for(lambda s: "EXIT=" in s, "the watch to exit")
            assert "Stopped watching (Ctrl-C)" in done and "EXIT=0" in done, done
            assert "Traceback" not in done, done
            pane.close()

            # The same view from the switch script.
            pane = Pane([sys.executable, str(REPO / "switch_judge_backend.py"), "show",
                         "--watch"], shell_env, tmp_path)
            pane.wait_for(lambda s: "redraw" in s and C in s, "show --watch drawing")
            pane.tmux("send-keys", "-t", "w", "C-c")
            assert "EXIT=0" in pane.wait_for(lambda s: "EXIT=" in s, "show --watch to exit")
        finally:
            pane.close()
            ray_judge.stop_judge()


def shift_done(judge, new: str) -> None:
    """Wait until the shift measurement on ``new`` has re-judged its sample."""
    give_up = time.monotonic() + WAIT_S
    while time.monotonic() < give_up:
        report = ray.get(judge.status.remote())["shift"].get("default")
        if report and report["new"] == new and report["done"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"the shift measurement on {new} did not finish: {report}")


def screenshot(ansi: str, png: Path) -> None:
    """The captured pane (with its colours) as a PNG, through rich's SVG and chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "RJ_WATCH_SCREENSHOT needs chromium (apt-get install -y chromium)"
    console = Console(file=io.StringIO(), width=118, record=True, color_system="truecolor")
    console.print(Text.from_ansi(ansi.rstrip("\n")))
    svg = console.export_svg(title="ray-judge watch")
    width, height = (int(float(x)) for x in re.search(
        r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    page = png.with_suffix(".svg")
    page.write_text(svg)
    try:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--no-first-run", "--hide-scrollbars", f"--screenshot={png.resolve()}",
                        f"--window-size={width},{height}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    finally:
        page.unlink()
