"""``docs/configuration.md``, rendered from :data:`ray_judge.settings.SETTINGS`::

    python -m ray_judge.configuration_page > docs/configuration.md

A module of its own, not a ``__main__`` in :mod:`ray_judge.settings`: the package imports
that one, and ``python -m`` on a module the package already imported warns.
"""

from __future__ import annotations

import sys

from .settings import SETTINGS

__all__ = ["markdown"]


def markdown() -> str:
    """``docs/configuration.md``: the settings table and where provider settings live."""
    rows = "\n".join(f"| `{s.env}` | {s.default} | {s.help} |" for s in SETTINGS)
    return f"""# Configuration

<!-- Generated from the table in ray_judge/settings.py by
     python -m ray_judge.configuration_page > docs/configuration.md
     Edit the table there, not here: tests/unit/test_settings.py compares the two. -->

Every process that runs ray_judge reads these variables through `JudgeConfig.from_env`:
the judge and its workers when they start (`start_judge` and `launch.sh` hand them the
starting shell's values), the CLI and `JudgeClient` for the override file, the actor's
name and namespace. Blank counts as unset. A bad value is an error that names the
variable and shows the value.

| variable | default | meaning |
|---|---|---|
{rows}

Provider variables are LiteLLM's and the CLI's own (`ANTHROPIC_API_KEY`,
`CLAUDE_CODE_OAUTH_TOKEN`, `ANTHROPIC_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_API_BASE`,
`HOSTED_VLLM_API_BASE`, ...). Secrets never appear in logs, `status`, metrics or `repr`.
"""


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m ray_judge.configuration_page > docs/configuration.md",
              file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
