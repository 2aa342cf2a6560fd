"""The cyclic garbage collector of the pool's own processes (the judge and its workers).

CPython runs a young collection every 700 allocations of container objects, and a full
one, which walks every live object, whenever enough of them have survived. A worker
holds LiteLLM's ~400,000 objects from the moment it imports it, and up to thousands of
requests' worth of aiohttp objects while calls are in flight, so at thousands of
verdicts per second the defaults spend about half of the worker's CPU walking the same
objects again and again (measured with ``gc.callbacks``: 4,096 verdicts in one process,
1.16 ms of CPU per verdict with the defaults, 0.49 ms with :func:`tune` and
:func:`freeze`).

:func:`tune` raises the young generation's threshold (``LLM_JUDGE_GC_THRESHOLD``,
50,000; the older generations' ratios stay CPython's); :func:`freeze` moves what the
process holds after a backend's start-up (imports, the planned routes) out of the
collector's sight for good, as ``gc.freeze`` does after a server's start-up. Both leave
reference counting alone: an object nothing points to is freed at once as always; only
garbage in reference cycles waits longer (at most a threshold's worth of allocations).
The caller's process (rollout workers, a training script) is never touched.
"""

from __future__ import annotations

import gc

__all__ = ["freeze", "tune"]

_frozen: set[str] = set()


def tune(threshold: int) -> None:
    """Collect the young generation every ``threshold`` allocations (0: CPython's own
    settings, untouched)."""
    if threshold <= 0:
        return
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)


def freeze(threshold: int, what: str) -> None:
    """After ``what`` (a backend kind, a process's start-up) has loaded what it keeps for
    life, take every object alive now out of future collections. Once per ``what`` per
    process: a later freeze would also pin whatever happens to be in flight then."""
    if threshold <= 0 or what in _frozen:
        return
    _frozen.add(what)
    gc.collect()  # what start-up left in cycles goes now, not pinned for life
    gc.freeze()
