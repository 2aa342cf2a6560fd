"""Which backend serves, and the record of every change: switches, failovers, returns.

:class:`SwitchHistory` is told the backend each dispatch round routes to. It counts a
change, keeps the latest few for ``status()["recent_switches"]`` (the watch view shows
them), names why it happened, and tells its listeners when the *settled* backend changes
(a half-open circuit's single probe is not a switch: the backend may still be out of
quota, and re-judging or validating on it is what must not happen).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..spec import BackendSpec

__all__ = ["RECENT_SWITCHES", "SwitchHistory"]

#: Backend changes kept for ``status()["recent_switches"]``.
RECENT_SWITCHES = 10


class SwitchHistory:
    """The serving backend over time.

    Args:
        clock: wall-clock time, for each change's ``at``.
        on_current: called with the new backend on every change (``switched`` is False
            for the first one): the metrics' current-backend gauge.
    """

    def __init__(self, clock: Callable[[], float],
                 on_current: Callable[..., None] = lambda backend, *, switched: None) -> None:
        self._clock = clock
        self._on_current = on_current
        self._settled_listeners: list[tuple[Callable[..., None], bool]] = []
        self.current: str | None = None
        self.settled: str | None = None  # serving outside a half-open circuit's probe
        self.primary: BackendSpec | None = None
        self.switches = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_SWITCHES)
        self.why = "start"  # of the latest change


    def __repr__(self) -> str:
        return f"SwitchHistory(current={self.current!r}, switches={self.switches})"

    def on_settled(self, listener: Callable[..., None], *, initial: bool = False) -> None:
        """Call ``listener(old, new)`` whenever the settled backend changes; with
        ``initial``, for the first settled backend too (``old`` None) and with the
        change's ``why`` (``start``, ``switch``, ``failover``, ``back to primary``)."""
        self._settled_listeners.append((listener, initial))

    def note(self, spec: BackendSpec, primary: BackendSpec, cap: int | None) -> None:
        """This round serves ``spec``; the person's choice is ``primary``; ``cap`` is 1
        for a half-open circuit's probe."""
        previous_primary, self.primary = self.primary, primary
        text = str(spec)
        if text != self.current:
            switched = self.current is not None
            if switched:
                self.switches += 1
                why = ("failover" if spec != primary
                       else "switch" if primary != previous_primary
                       else "probe" if cap == 1 else "back to primary")
                self.recent.append({"at": self._clock(), "from": self.current, "to": text,
                                    "why": why})
                self.why = why
            self.current = text
            self._on_current(text, switched=switched)
        if cap is None and text != self.settled:
            old, self.settled = self.settled, text
            for listener, initial in self._settled_listeners:
                if initial:
                    listener(old, text, "start" if old is None else self.why)
                elif old is not None:
                    listener(old, text)
