"""The verdict cache: keys, LRU bound, SQLite persistence, never a failure."""

from __future__ import annotations

import sqlite3

from ray_judge.pool.cache import VerdictCache, as_cached, cache_key
from ray_judge.verdict import JudgeRequest, Status, Verdict

OK = Verdict(score=0.8, status=Status.OK, backend="litellm:openai/m", model="m", raw="SCORE: 8",
             cost_usd=0.002, input_tokens=10, output_tokens=5)


def test_key_depends_on_every_part_and_fields_cannot_be_shifted() -> None:
    base = JudgeRequest("ab", "c")
    keys = {
        cache_key("s", "m", "r", base),
        cache_key("s2", "m", "r", base),
        cache_key("s", "m2", "r", base),
        cache_key("s", "m", "r2", base),
        cache_key("s", "m", "r", JudgeRequest("a", "bc")),  # same text, other split
        cache_key("s", "m", "r", JudgeRequest("ab", "c", reference="")),
        cache_key("s", "m", "r", JudgeRequest("ab", "c", rubric="x")),
    }
    assert len(keys) == 7
    assert cache_key("s", "m", "r", base) == cache_key("s", "m", "r", JudgeRequest("ab", "c"))
    # metadata is the caller's, not part of what is judged
    assert cache_key("s", "m", "r", JudgeRequest("ab", "c", metadata=1)) == \
        cache_key("s", "m", "r", base)


def test_lru_bound_and_hit_rate() -> None:
    cache = VerdictCache(max_entries=2)
    for k in "abc":
        cache.put(k, OK)
    assert cache.get("a") is None and cache.get("c") is not None
    snap = cache.snapshot()
    assert snap["entries"] == 2 and snap["hits"] == 1 and snap["misses"] == 1
    assert snap["hit_rate"] == 0.5


def test_only_ok_verdicts_are_stored() -> None:
    cache = VerdictCache()
    cache.put("k", Verdict.failure(Status.TIMEOUT, "slow"))
    cache.put("k2", Verdict.failure(Status.PARSE_ERROR, "no score", raw="hmm"))
    assert cache.get("k") is None and cache.get("k2") is None


def test_cached_copy_carries_the_callers_metadata_and_no_new_cost() -> None:
    copy = as_cached(OK, JudgeRequest("p", "r", metadata={"id": 7}))
    assert copy.cached and copy.metadata == {"id": 7} and copy.score == 0.8
    assert copy.cost_usd == 0.0 and copy.attempts == 0


def test_sqlite_keeps_verdicts_across_restarts(tmp_path) -> None:
    path = tmp_path / "cache" / "verdicts.db"
    first = VerdictCache(path=path)
    first.put("k", OK)
    first.close()
    second = VerdictCache(path=path)
    got = second.get("k")
    assert got is not None and got.score == 0.8 and got.status is Status.OK
    assert got.backend == OK.backend and got.raw == OK.raw
    second.close()


def test_a_corrupt_row_is_ignored_not_fatal(tmp_path, caplog) -> None:
    path = tmp_path / "v.db"
    VerdictCache(path=path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO verdicts VALUES ('bad', '{\"score\": 7, \"status\": \"ok\"}', 0)")
    db.commit()
    db.close()
    cache = VerdictCache(path=path)
    assert cache.get("bad") is None  # score 7 is outside [0, 1]: rejected, logged
    assert "could not be read" in caplog.text
    cache.close()


def test_size_zero_disables() -> None:
    assert not VerdictCache(0).enabled
