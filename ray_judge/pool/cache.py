"""The verdict cache: identical requests to the same judge get the same verdict once.

Keyed by a hash of (backend spec, model, rubric, prompt, response, reference). Only
``ok`` verdicts are stored, so a failure is always tried again. A group judged in one
call is one entry (its tuple of Verdicts, stored only when every one is ``ok``): the
judge graded the members together, so a member alone is not the same question. An
in-memory LRU, and optionally an SQLite file so that a restarted judge keeps its
verdicts. The same file keeps each judge's reservoir of sampled requests
(:mod:`.reservoir`), one row per slot, and what billed backends cost, one row per
second (:mod:`.budget`), so a restarted judge remembers what it spent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..verdict import GroupRequest, JudgeRequest, Verdict

if TYPE_CHECKING:
    from ..judging.definition import JudgeDefinition

__all__ = ["Result", "VerdictCache", "as_cached", "cache_key", "group_cache_key", "members",
           "stamped"]

#: What a request gets back: a Verdict, or one per response for a group.
Result = Verdict | tuple[Verdict, ...]

logger = logging.getLogger(__name__)

# Commit the disk cache at most this often: one fsync per verdict would cost more than
# the lookups save; a crash loses at most this many seconds of verdicts.
_COMMIT_EVERY_S = 1.0
_STORED_FIELDS = ("score", "status", "backend", "model", "raw", "input_tokens",
                  "output_tokens", "cost_usd", "judge", "judge_version", "extra",
                  "cache_read_tokens", "cache_write_tokens")


def members(result: Result) -> tuple[Verdict, ...]:
    """The Verdicts of a result: itself, or a group's members."""
    return result if isinstance(result, tuple) else (result,)


def stamped(result: Result, definition: JudgeDefinition) -> tuple[Verdict, ...]:
    """A group's Verdicts, each naming its judge (a failure the worker could not stamp,
    such as a lost worker's, too); a fallback Verdict keeps the judge that made it."""
    return tuple(v if v.judge is not None else
                 v.with_(judge=definition.name, judge_version=definition.version)
                 for v in members(result))


def cache_key(spec: str, model: str, rubric_id: str, request: JudgeRequest) -> str:
    """A stable key; the parts are length-prefixed so no two requests can collide by
    moving text from one field to the next. ``rubric_id`` names the judge (its name and
    version), so a changed judge never hits its old verdicts."""
    digest = hashlib.sha256()
    parts = (spec, model, rubric_id, request.rubric, _text(request.prompt),
             _text(request.response), request.reference,
             None if request.fields is None else _text(request.fields))
    for part in parts:
        data = b"\x00" if part is None else b"\x01" + part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _text(value: object) -> str:
    # A trajectory (list of messages) or the fields dict, canonically; text as it is.
    if isinstance(value, str):
        return value
    return "\x02" + json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)


def group_cache_key(spec: str, model: str, judge_id: str, request: GroupRequest) -> str:
    """The key of a group judged in one call: its whole content, in the caller's order
    (the same responses in another order are shown in another shuffle)."""
    digest = hashlib.sha256(b"group")
    parts = (spec, model, judge_id, _text(request.prompt), request.reference,
             None if request.fields is None else _text(request.fields),
             str(len(request.responses)), *(_text(r) for r in request.responses))
    for part in parts:
        data = b"\x00" if part is None else b"\x01" + part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class VerdictCache:
    """LRU of ``ok`` verdicts, optionally backed by SQLite at ``path``."""

    def __init__(self, max_entries: int = 100_000, path: Path | None = None) -> None:
        self.max_entries = max_entries
        self._memory: OrderedDict[str, Result] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.deduplicated = 0
        self._db: sqlite3.Connection | None = None
        self._dirty = 0
        self._last_commit = time.monotonic()
        if path is not None:
            self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS verdicts "
                   "(key TEXT PRIMARY KEY, verdict TEXT NOT NULL, at REAL NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS reservoir (judge TEXT NOT NULL, "
                   "slot INTEGER NOT NULL, sample TEXT NOT NULL, PRIMARY KEY (judge, slot))")
        db.execute("CREATE TABLE IF NOT EXISTS reservoir_seen "
                   "(judge TEXT PRIMARY KEY, seen INTEGER NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS spend "
                   "(second INTEGER PRIMARY KEY, usd REAL NOT NULL)")
        db.execute("BEGIN")
        return db

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def get(self, key: str) -> Result | None:
        verdict = self._memory.get(key)
        if verdict is not None:
            self._memory.move_to_end(key)
        elif self._db is not None:
            verdict = self._load(key)
            if verdict is not None:
                self._remember(key, verdict)
        if verdict is None:
            self.misses += 1
        else:
            self.hits += 1
        return verdict

    def put(self, key: str, verdict: Result) -> None:
        if not all(v.ok and not v.cached for v in members(verdict)):
            return
        self._remember(key, verdict)
        if self._db is not None:
            if isinstance(verdict, tuple):
                stored: Any = [_stored(v) for v in verdict]
            else:
                stored = _stored(verdict)
            try:
                self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?)",
                                 (key, json.dumps(stored), time.time()))
                self._dirty += 1
                self.flush(force=False)
            except sqlite3.Error:
                logger.exception("writing the verdict cache failed; continuing in memory")

    @property
    def persistent(self) -> bool:
        return self._db is not None

    def save_sample(self, judge: str, slot: int, sample: dict[str, Any], seen: int) -> None:
        """Keep reservoir ``slot`` of ``judge`` in the file (no-op without one)."""
        if self._db is None:
            return
        try:
            self._db.execute("INSERT OR REPLACE INTO reservoir VALUES (?, ?, ?)",
                             (judge, slot, json.dumps(sample)))
            self._db.execute("INSERT OR REPLACE INTO reservoir_seen VALUES (?, ?)",
                             (judge, seen))
            self._dirty += 1
            self.flush(force=False)
        except (sqlite3.Error, TypeError, ValueError):
            logger.exception("writing the reservoir failed; continuing in memory")

    def add_spend(self, at: float, usd: float) -> None:
        """Keep ``usd`` spent at ``at`` (epoch seconds) in the file (no-op without one).
        Committed at once: money spent is worth a commit (cheap in WAL mode)."""
        if self._db is None:
            return
        try:
            self._db.execute("INSERT INTO spend VALUES (?, ?) ON CONFLICT(second) "
                             "DO UPDATE SET usd = usd + excluded.usd", (int(at), usd))
            self._dirty += 1
            self.flush()
        except sqlite3.Error:
            logger.exception("writing the spend failed; continuing in memory")

    def spend(self) -> list[tuple[float, float]]:
        """Every ``(second, usd)`` kept in the file, oldest first."""
        if self._db is None:
            return []
        try:
            rows = self._db.execute("SELECT second, usd FROM spend ORDER BY second").fetchall()
        except sqlite3.Error:
            logger.exception("the spend in the cache file could not be read; ignoring it")
            return []
        return [(float(second), float(usd)) for second, usd in rows]

    def save_seen(self, judge: str, seen: int) -> None:
        if self._db is None:
            return
        try:
            self._db.execute("INSERT OR REPLACE INTO reservoir_seen VALUES (?, ?)", (judge, seen))
            self._dirty += 1
        except sqlite3.Error:
            logger.exception("writing the reservoir failed; continuing in memory")

    def drop_samples(self, judge: str) -> None:
        """Forget a reservoir kept in the file."""
        if self._db is None:
            return
        try:
            self._db.execute("DELETE FROM reservoir WHERE judge = ?", (judge,))
            self._db.execute("DELETE FROM reservoir_seen WHERE judge = ?", (judge,))
            self._dirty += 1
        except sqlite3.Error:
            logger.exception("dropping a reservoir from the cache file failed")

    def load_samples(self) -> dict[str, tuple[int, list[dict[str, Any]]]]:
        """Every judge's ``(seen, samples in slot order)`` from the file; empty without one."""
        if self._db is None:
            return {}
        out: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        try:
            seen = dict(self._db.execute("SELECT judge, seen FROM reservoir_seen").fetchall())
            for judge, _, sample in self._db.execute(
                    "SELECT judge, slot, sample FROM reservoir ORDER BY judge, slot"):
                out.setdefault(judge, (int(seen.get(judge, 0)), []))[1].append(
                    json.loads(sample))
        except (sqlite3.Error, ValueError):
            logger.exception("the reservoir in the cache file could not be read; ignoring it")
            return {}
        return out

    def flush(self, *, force: bool = True) -> None:
        if self._db is None or not self._dirty:
            return
        if force or time.monotonic() - self._last_commit >= _COMMIT_EVERY_S:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._dirty = 0
            self._last_commit = time.monotonic()

    def _remember(self, key: str, verdict: Result) -> None:
        self._memory[key] = verdict
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _load(self, key: str) -> Result | None:
        assert self._db is not None
        try:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?",
                                   (key,)).fetchone()
            if row is None:
                return None
            stored = json.loads(row[0])
            if isinstance(stored, list):
                return tuple(Verdict(**v) for v in stored)
            return Verdict(**stored)
        except (sqlite3.Error, ValueError, TypeError):
            logger.exception("a verdict cache entry could not be read; ignoring it")
            return None

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._db.execute("COMMIT")
            self._db.close()
            self._db = None

    def snapshot(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "enabled": self.enabled,
            "entries": len(self._memory),
            "hits": self.hits,
            "misses": self.misses,
            "deduplicated": self.deduplicated,
            "hit_rate": round(self.hits / lookups, 4) if lookups else None,
            "persistent": self._db is not None,
        }


def as_cached(result: Result, request: JudgeRequest | GroupRequest) -> Result:
    """A stored (or shared) result as this request's answer: its own metadata, no cost
    again. A failure shared with an identical request keeps what it says of the call
    (attempts, tokens, cost, error) and is marked ``extra["shared_call"]``: totals count
    that call once, on the request that made it."""
    if isinstance(result, tuple):
        return tuple(_as_cached(v, request.metadata) for v in result)
    return _as_cached(result, request.metadata)


def _as_cached(verdict: Verdict, metadata: Any) -> Verdict:
    if not verdict.ok:
        return dataclasses.replace(verdict, metadata=metadata,
                                   extra={**verdict.extra, "shared_call": True})
    return dataclasses.replace(verdict, cached=True, metadata=metadata, latency_s=0.0,
                               attempts=0, format_retries=0,
                               cost_usd=None if verdict.cost_usd is None else 0.0)


def _stored(verdict: Verdict) -> dict[str, Any]:
    stored = {f: getattr(verdict, f) for f in _STORED_FIELDS}
    stored["status"] = verdict.status.value
    stored["extra"] = dict(verdict.extra)
    return stored
