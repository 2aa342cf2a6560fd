"""The reward servers (``ray-judge serve-rm``) that told the judge they run, for status.

A server announces itself every :data:`ANNOUNCE_S` while it listens and says goodbye
when it stops. A killed server says no goodbye, so one not heard from for
:data:`EXPIRE_S` drops out; a restarted judge hears of every server again within
:data:`ANNOUNCE_S`. ``status()`` shows them, so ``ray-judge status`` can warn about one
that runs beyond loopback without a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ANNOUNCE_S", "EXPIRE_S", "RewardServers"]

ANNOUNCE_S = 10.0
EXPIRE_S = 3 * ANNOUNCE_S
#: What a record holds; anything else is dropped, so status stays small and plain.
#: ``insecure``: beyond loopback without a token (``--insecure-no-token``).
FIELDS = {"id": str, "url": str, "token": bool, "insecure": bool, "node": str, "pid": int}


class RewardServers:
    """The announced servers, by id, each with when it was last heard from."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[float, dict[str, Any]]] = {}

    def note(self, record: Mapping[str, Any], running: bool = True) -> None:
        """Record a server's announcement (``running=False``: its goodbye)."""
        for key, kind in FIELDS.items():
            if not isinstance(record.get(key), kind):
                raise TypeError(f"a reward server record needs {key!r} as "
                                f"{kind.__name__}, got {record.get(key)!r}")
        if running:
            self._seen[record["id"]] = (self._clock(), {k: record[k] for k in FIELDS})
        else:
            self._seen.pop(record["id"], None)

    def snapshot(self) -> list[dict[str, Any]]:
        """The servers heard from within :data:`EXPIRE_S`, oldest id first."""
        now = self._clock()
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] <= EXPIRE_S}
        return [dict(record) for _, (_, record) in sorted(self._seen.items())]
