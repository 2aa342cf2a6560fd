"""MkDocs hooks for the site (``hooks:`` in mkdocs.yml).

The package's docstrings cross-reference with Sphinx's roles (``:class:`~ray_judge.X```),
which mkdocstrings renders as the role's name in front of inline code. The page keeps the
code and drops the role; a ``~`` prefix shows the last name only, as Sphinx does.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([^<]*)</code>")


def _shown(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **_: object) -> str:
    return _ROLE.sub(_shown, html)
