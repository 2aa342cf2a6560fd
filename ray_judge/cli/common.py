"""What every command shares: one-line user errors, the config, and the running judge.

Nothing here imports ray at import time: ``switch_judge_backend.py show`` must answer in
a blink, also on a login node where importing ray takes seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from ..config import JudgeConfig
from ..errors import JudgeError

__all__ = ["connect_ray", "fail", "load_config", "running_judge", "user_errors"]


def fail(message: str) -> NoReturn:
    # One line, whatever the OS or a parser put in the message, so scripts can grep it.
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    raise typer.Exit(code=1)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn ray_judge's own errors (bad env, bad spec, unwritable file) into one line."""
    try:
        yield
    except JudgeError as exc:
        fail(str(exc))


def load_config() -> JudgeConfig:
    _mute_last_resort_logging()
    with user_errors():
        return JudgeConfig.from_env()


def _mute_last_resort_logging() -> None:
    # The commands print the resolver's problems themselves; with no handler anywhere,
    # Python's last-resort handler would print each a second time, raw, on stderr.
    # A NullHandler stops only that: records still reach any handler set up later.
    library_logger = logging.getLogger("ray_judge")
    if not library_logger.handlers:
        library_logger.addHandler(logging.NullHandler())


def running_judge(config: JudgeConfig) -> tuple[dict | None, str | None]:
    from ..pool.cluster import JudgeUnreachable, cluster_address, live_status

    if cluster_address() is None:
        return None, "no Ray cluster found here (RAY_ADDRESS unset)"
    try:
        return live_status(config), None
    except JudgeUnreachable as exc:
        return None, str(exc)


def connect_ray() -> None:
    from ..pool.cluster import JudgeUnreachable, connect

    try:
        connect(quiet=True)
    except JudgeUnreachable as exc:
        fail(str(exc))
