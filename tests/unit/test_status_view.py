"""The one reading of the judge's status that ``ray-judge status`` / ``show`` print and
``ray-judge watch`` draws: both views say the same things from it."""

from __future__ import annotations

import io

from rich.console import Console

from ray_judge.cli import format_live_status
from ray_judge.monitoring.status_view import count_columns, read_status
from ray_judge.monitoring.watch import View, render

STATUS = {
    "backend": "litellm:a", "source": "file", "override_file": "/r/.judge_backend",
    "uptime_s": 5.0, "started_at": 1_700_000_000.0, "pid": 1, "workers": 2, "queued": 3,
    "in_flight": {"litellm:b": 4, "litellm:a": 0}, "total": 9, "latency_p50_s": 0.5,
    "latency_p95_s": None, "retries": 0, "switches": 1, "cost_usd": 0.0,
    "counts": {"litellm:b": {"timeout": 1, "ok": 2}, "litellm:a": {"weird": 1, "ok": 5}},
    "failover": {"fallbacks": ["litellm:b"], "serving": "litellm:b", "failovers": 2,
                 "open": {"litellm:a": {"until": None, "reason": "auth_error: no key",
                                        "probing": True}}},
    "reward_servers": [{"url": "http://0.0.0.0:7/get_reward", "pid": 7, "node": "n",
                        "token": False, "insecure": True}],
}


def test_the_reading() -> None:
    view = read_status(STATUS)
    assert view.fallback == "litellm:b"
    assert view.in_flight == {"litellm:b": 4} and view.in_flight_total == 4
    assert (view.latency_p50, view.latency_p95) == ("0.50s", "-")
    assert [c.text() for c in view.failover.circuits] == [
        "litellm:a OUT (probing): auth_error: no key"]
    assert count_columns(view.counts) == ["ok", "timeout", "weird"]


def test_no_fallback_while_the_selected_backend_serves() -> None:
    failover = {**STATUS["failover"], "serving": "litellm:a"}
    assert read_status({**STATUS, "failover": failover}).fallback is None
    assert read_status({**STATUS, "failover": {**failover, "open": {}}}).fallback is None


def test_the_text_and_the_frame_say_the_same_things() -> None:
    text = format_live_status(STATUS)
    console = Console(file=io.StringIO(), width=300, record=True, color_system=None)
    console.print(render(View(target="t", status=STATUS, polled_at=1_700_000_005.0)))
    frame = console.export_text()
    for said in ("serving fallback litellm:b", "litellm:a OUT (probing): auth_error: no key",
                 "p50 0.50s", "litellm:b 4", "listens beyond loopback without a token"):
        assert said in text and said in frame, said
    assert "    litellm:a: ok 5, weird 1\n    litellm:b: ok 2, timeout 1" in text


def test_the_providers_prompt_cache_is_shown_per_backend_apart_from_the_verdict_cache() -> None:
    status = {**STATUS, "cached": 3, "prompt_cache": {
        "litellm:anthropic/claude-sonnet-4-5": {"input_tokens": 48_000, "read_tokens": 40_090,
                                                "write_tokens": 3_206, "hit_ratio": 0.8352},
        "litellm:openai/gpt-4o": {"input_tokens": 900, "read_tokens": 0, "write_tokens": 0,
                                  "hit_ratio": 0.0}}}
    (cache,) = read_status(status).prompt_cache  # a backend with no cache use is left out
    assert cache.text() == ("litellm:anthropic/claude-sonnet-4-5 84% of 48,000 input "
                            "tokens read from cache, 3,206 written")
    assert f"  prompt cache: {cache.text()}" in format_live_status(status).splitlines()
    console = Console(file=io.StringIO(), width=300, record=True, color_system=None)
    console.print(render(View(target="t", status=status, polled_at=1_700_000_005.0)))
    assert cache.text() in console.export_text()


def test_the_spend_budget_is_shown_with_what_is_left_and_when_the_hour_refills() -> None:
    budget = {"policy": "fallback", "spent_usd": 12.4, "limit_usd": 500.0,
              "hour_spent_usd": 20.31, "hour_limit_usd": 20.0, "reached": "hour",
              "refill_at": 1_700_000_750.0, "refill_in_s": 750.0, "held": 0, "refused": 3,
              "persistent": True}
    status = {**STATUS, "budget": budget}
    text = read_status(status).budget.text()
    assert text.startswith("12.40 of 500 USD spent, 20.31 of 20 USD in the last hour "
                           "(policy fallback); HOURLY LIMIT REACHED, refills in 750s (at ")
    assert f"  budget:   {text}" in format_live_status(status).splitlines()
    console = Console(file=io.StringIO(), width=300, record=True, color_system=None)
    console.print(render(View(target="t", status=status, polled_at=1_700_000_005.0)))
    assert text in console.export_text()
    unlimited = {**budget, "limit_usd": None, "hour_limit_usd": None, "reached": None}
    assert read_status({**STATUS, "budget": unlimited}).budget is None
    assert read_status(STATUS).budget is None  # an older judge says nothing of it


def test_hedging_is_shown_with_its_share_and_what_losing_calls_cost() -> None:
    hedging = {"enabled": True, "share_cap": 0.05, "sent": 9, "won": 7, "failed": 0,
               "cancelled": 8, "in_flight": 0, "window_s": 60.0, "window_requests": 512,
               "window_hedges": 3, "loser_tokens": 1200, "loser_cost_usd": 0.0004,
               "refused": {"share": 40, "in_flight": 2}}
    status = {**STATUS, "hedging": hedging}
    text = read_status(status).hedging.text()
    assert text == ("9 sent, 7 won; last minute 3 of 512 requests (0.6%, cap 5%); losers "
                    "1,200 tokens, 0.0004 USD; refused: in_flight 2, share 40")
    assert f"  hedging:  {text}" in format_live_status(status).splitlines()
    idle = {**hedging, "sent": 0, "refused": {}}
    assert read_status({**STATUS, "hedging": idle}).hedging is None  # nothing to say
    assert read_status({**STATUS, "hedging": {**hedging, "enabled": False}}).hedging is None
    assert read_status(STATUS).hedging is None  # an older judge says nothing of it
