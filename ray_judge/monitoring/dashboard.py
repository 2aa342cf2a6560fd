"""The Grafana dashboard for the judge's metrics, shipped as JSON beside this module.

Grafana provisions dashboards from a directory of JSON files; Ray's own setup reads
``<ray temp dir>/session_latest/metrics/grafana/dashboards`` (``ray-judge
grafana-dashboard --out`` writes there). Every query filters on two template variables,
``$SessionName`` (Ray's label on every metric, as in Ray's own dashboards) and
``$backend``; :func:`panel_queries` lists the queries, so a test can run each of them
against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_FILE", "PanelQuery", "dashboard", "dashboard_text", "panel_queries",
           "substitute", "write_dashboard"]

#: The file's name, in the package and where ``--out`` writes it.
DASHBOARD_FILE = "ray_judge_grafana_dashboard.json"
_PACKAGED = "grafana_dashboard.json"


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL query of the dashboard: a panel's target, or an annotation."""

    panel: str
    ref: str
    expr: str
    instant: bool = False


def dashboard_text() -> str:
    """The dashboard's JSON, exactly as shipped."""
    return resources.files(__package__).joinpath(_PACKAGED).read_text(encoding="utf-8")


def dashboard() -> dict[str, Any]:
    """The dashboard as a dict."""
    return json.loads(dashboard_text())


def write_dashboard(directory: Path | str) -> Path:
    """Write the dashboard into ``directory`` (created if missing); returns the file."""
    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    path = target / DASHBOARD_FILE
    path.write_text(dashboard_text(), encoding="utf-8")
    return path


def panel_queries(board: dict[str, Any] | None = None) -> list[PanelQuery]:
    """Every PromQL expression of the dashboard: each panel target, each annotation."""
    board = dashboard() if board is None else board
    out = []
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append(PanelQuery(panel["title"], target.get("refId", ""), target["expr"],
                                      bool(target.get("instant"))))
    for note in board.get("annotations", {}).get("list", []):
        if note.get("expr"):
            out.append(PanelQuery(f"annotation: {note['name']}", "", note["expr"]))
    return out


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out += _panels(panel.get("panels", []))  # panels inside a collapsed row
    return out


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with ``$name`` / ``${name}`` replaced as Grafana would; unknown names are
    an error (a query that Grafana would send half-filled is a broken panel)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)
