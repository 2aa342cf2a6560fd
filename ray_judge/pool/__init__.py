"""The Ray side: the judge singleton, its workers, the dispatcher and what it keeps
(limits, failover, cache, stats, metrics)."""
