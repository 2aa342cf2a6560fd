"""Summarise py-spy ``--format raw`` profiles: where the samples went.

    python -m bench.profile_summary prof/s1-single-256-*.txt

For each file: the share of samples by leaf function ("self"), and by the outermost
layer (:data:`LAYERS`), and the ray_judge functions on the stack ("inclusive"), so one
can tell the pool's own work from the libraries'.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")
#: A sample belongs to the first layer, in this order, that has a frame in its stack:
#: litellm's cost includes the HTTP client and pydantic work it calls; ray_judge's is our
#: code outside litellm; then Ray's Python side, then the bare event loop.
LAYERS = (("litellm (with its HTTP client)", ("/litellm/",)),
          ("ray_judge", ("/ray_judge/",)),
          ("ray", ("/ray/",)),
          ("asyncio", ("/asyncio/", "/selectors.py")))


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    short = "/".join(match["file"].split("/")[-2:])
    return f"{match['func']} ({short})"


def _layer(frames: list[str]) -> str:
    for name, markers in LAYERS:
        if any(m in f for f in frames for m in markers):
            return name
    return "other"


def summarise(path: Path, top: int = 12) -> dict:
    stacks = parse(path)
    total = sum(c for _, c in stacks) or 1
    leaf: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        leaf[_name(frames[-1])] += count
        layers[_layer(frames)] += count
        seen = set()
        for f in frames:
            if "/ray_judge/" in f and (n := _name(f)) not in seen:
                seen.add(n)
                ours[n] += count
    pct = lambda c: round(100.0 * c / total, 1)  # noqa: E731
    return {"file": path.name, "samples": total,
            "by_layer_pct": {k: pct(v) for k, v in layers.most_common()},
            "self_top": [(k, pct(v)) for k, v in leaf.most_common(top)],
            "ray_judge_inclusive_top": [(k, pct(v)) for k, v in ours.most_common(top)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    for path in args.files:
        s = summarise(path, args.top)
        print(f"== {s['file']}: {s['samples']} samples")
        print("   by layer: " + ", ".join(
            f"{k} {v}%" for k, v in s["by_layer_pct"].items()))
        print("   self:")
        for name, p in s["self_top"]:
            print(f"     {p:5.1f}%  {name}")
        print("   ray_judge frames, inclusive:")
        for name, p in s["ray_judge_inclusive_top"]:
            print(f"     {p:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
