"""Switch the LLM judge's backend while a run is going: ``python switch_judge_backend.py --help``.

A thin entry for the ``switch-judge-backend`` console script; the commands live in
:mod:`ray_judge.cli.switch`.
"""

from ray_judge.cli import switch_main

if __name__ == "__main__":
    switch_main()
