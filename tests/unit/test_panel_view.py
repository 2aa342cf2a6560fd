"""Judge panels in ``show``/``ray-judge status`` and ``watch`` (issue 23): both views say
the same two lines, read once from ``status()["panels"]``."""

from __future__ import annotations

import io

from rich.console import Console

from ray_judge.cli import format_live_status
from ray_judge.monitoring.panel_view import short
from ray_judge.monitoring.status_view import read_status
from ray_judge.monitoring.watch import View, render

from .test_status_view import STATUS

PANEL = {
    "members": ["@current", "litellm:openai/gpt-4o-mini", "litellm:gemini/gemini-2.0-flash"],
    "aggregate": "median", "escalate_to": "litellm:anthropic/claude-opus-4-1",
    "verdicts": 1024, "failed": 3, "escalated": 96, "escalation_rate": 0.0938,
    "calls": {"@current": 1021, "litellm:openai/gpt-4o-mini": 1024,
              "litellm:gemini/gemini-2.0-flash": 1024, "escalation": 96},
    "cost_usd": 0.412,
    "call_share": {"@current": 0.3, "litellm:openai/gpt-4o-mini": 0.3,
                   "litellm:gemini/gemini-2.0-flash": 0.3, "escalation": 0.1},
    "cost_share": {"@current": 0.18, "litellm:openai/gpt-4o-mini": 0.09,
                   "litellm:gemini/gemini-2.0-flash": 0.07, "escalation": 0.66},
    "agreement": {"n": 1000, "alpha": 0.7123, "effective_judges": 2.31,
                  "spearman": {"@current ~ litellm:openai/gpt-4o-mini": 0.74,
                               "@current ~ litellm:gemini/gemini-2.0-flash": None,
                               "litellm:openai/gpt-4o-mini ~ litellm:gemini/gemini-2.0-flash":
                                   0.61},
                  "mean_deviation": {"@current": 0.06, "litellm:openai/gpt-4o-mini": 0.08,
                                     "litellm:gemini/gemini-2.0-flash": None}},
}


def test_a_panel_is_two_lines_in_both_views() -> None:
    status = {**STATUS, "panels": {"math_panel": PANEL}}
    (panel,) = read_status(status).panels
    assert panel.text() == (
        "math_panel: 1,024 verdicts, 3 failed, escalated 96 (9.4%); alpha 0.71, 2.3 "
        "effective judges of 3; spearman @current ~ gpt-4o-mini 0.74, "
        "gpt-4o-mini ~ gemini-2.0-flash 0.61")
    assert panel.members_text() == (
        "cost $0.4120: @current calls 30% cost 18% dev 0.06; gpt-4o-mini calls 30% cost 9% "
        "dev 0.08; gemini-2.0-flash calls 30% cost 7% dev -; escalation calls 10% cost 66%")
    lines = format_live_status(status).splitlines()
    at = lines.index(f"  panel:    {panel.text()}")
    assert lines[at + 1] == f"            {panel.members_text()}"
    console = Console(file=io.StringIO(), width=400, record=True, color_system=None)
    console.print(render(View(target="t", status=status, polled_at=1_700_000_005.0)))
    frame = console.export_text()
    assert panel.text() in frame and panel.members_text() in frame


def test_an_older_judge_and_an_idle_panel() -> None:
    assert read_status(STATUS).panels == ()
    idle = {**PANEL, "verdicts": 0, "failed": 0, "escalated": 0, "escalation_rate": None,
            "escalate_to": None, "cost_usd": 0.0,
            "call_share": dict.fromkeys(PANEL["members"]),
            "cost_share": dict.fromkeys(PANEL["members"]),
            "agreement": {"n": 0, "alpha": None, "effective_judges": None, "spearman": {},
                          "mean_deviation": dict.fromkeys(PANEL["members"])}}
    (panel,) = read_status({**STATUS, "panels": {"p": idle}}).panels
    assert panel.text() == "p: 0 verdicts, 0 failed; alpha -, - effective judges of 3"
    assert "@current calls - cost - dev -" in panel.members_text()


def test_short_member_names() -> None:
    assert [short(m) for m in ("@current", "litellm:openai/gpt-4o", "litellm:gpt-4o",
                               "ccode-4-haiku")] == ["@current", "gpt-4o", "gpt-4o",
                                                     "ccode-4-haiku"]
