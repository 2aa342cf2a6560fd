"""ray_judge's benchmark harness: ``python -m bench [--smoke] [--json OUT]``.

Each scenario of issue 6 runs against its own fake provider processes and its own Ray
cluster on 127.0.0.1, next to a baseline measured in the same run; the table reports
ratios to that baseline, CPU seconds per request (counted from /proc over the processes
involved), p50/p99 latency and peak memory. ``--smoke`` runs every scenario at a tiny
size to check that the harness works (``tests/system/test_bench_smoke.py``); it says nothing
about speed.
"""
