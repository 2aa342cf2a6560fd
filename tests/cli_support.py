"""Where the tests find the real Claude Code CLI: CLAUDE_CLI_PATH, else CI's npm install."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def find_cli() -> str | None:
    for candidate in (os.environ.get("CLAUDE_CLI_PATH"),
                      str(REPO / ".ci/node/node_modules/.bin/claude")):
        if candidate and os.access(candidate, os.X_OK):
            return str(Path(candidate).absolute())
    return None


# Read at import: the autouse clean_judge_env fixture removes CLAUDE_CLI_PATH later.
CLI = find_cli()


def proc_stats() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgid) of every process, from /proc; vanished ones skipped."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # The command name may hold spaces or parentheses: split after the last ")".
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out.append((int(entry), fields[0], int(fields[1]), int(fields[2])))
    return out
