"""The command lines: ``switch_judge_backend.py`` / ``switch-judge-backend``, and ``ray-judge``.

:mod:`.switch` holds the four switch commands (``litellm``, ``ccode``, ``show``,
``remove``) on :data:`switch_app`; :mod:`.pool` the pool's own commands (``start``,
``stop``, ``status``, ``serve-rm``, ``watch``, ``grafana-dashboard``, ``shift-plot``);
:mod:`.eval` the judge eval (``eval``, its report in :mod:`.eval_report`);
:mod:`.status_text` the running judge's status as text. Here, :data:`app` (``ray-judge``)
mounts them all, and the entry points.

Nothing here imports ray or litellm at import time: switching must answer in a blink,
also on a login node where importing ray takes seconds.
"""

from __future__ import annotations

import typer

from . import pool
from .eval import eval_command
from .status_text import format_live_status, reward_server_lines, shift_lines
from .switch import Notifier, notify_running_judge, show, switch_app

__all__ = ["Notifier", "app", "format_live_status", "main", "notify_running_judge",
           "reward_server_lines", "shift_lines", "switch_app", "switch_main"]

app = typer.Typer(
    name="ray-judge",
    no_args_is_help=True,
    add_completion=False,
    help="An LLM-as-a-judge pool for RL training on Ray that switches backends live.",
)
app.add_typer(switch_app, name="switch",
              help="Switch the judge backend (same commands as switch_judge_backend.py).")
app.command("show", help="Show the effective backend (same as `switch show`).")(show)
app.command("start")(pool.start)
app.command("stop")(pool.stop)
app.command("status")(pool.status)
app.command("serve-rm")(pool.serve_rm)
app.command("watch")(pool.watch_judge)
app.command("grafana-dashboard")(pool.grafana_dashboard)
app.command("shift-plot")(pool.shift_plot)
app.command("eval")(eval_command)


def main() -> None:
    """Run ``ray-judge``."""
    app()


def switch_main() -> None:
    """Run ``switch-judge-backend`` (also ``python switch_judge_backend.py``)."""
    switch_app()
