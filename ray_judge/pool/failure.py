"""A failed result: what a request gets when no backend answered it.

The dispatcher and the workers both answer a request that could not be judged with
one, so it lives below both of them.
"""

from __future__ import annotations

from ..verdict import GroupRequest, JudgeRequest, Status, Verdict
from .cache import Result

__all__ = ["failure"]


def failure(request: JudgeRequest | GroupRequest, status: Status, error: str,
            **fields: object) -> Result:
    """A failed result for ``request``: one Verdict, or one per member of a group."""
    verdict = Verdict.failure(status, error, metadata=request.metadata, **fields)
    if isinstance(request, GroupRequest):
        return tuple(verdict for _ in request.responses)
    return verdict
