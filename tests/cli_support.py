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
