"""``python -m ray_judge.cli``: the same as ``ray-judge``."""

from . import main

if __name__ == "__main__":
    main()
