"""Which backend is in force: the override file, else ``LLM_JUDGE_NAME``, else the default.

:class:`BackendResolver` answers that question cheaply enough for a hot path: it touches
the file system at most once per ``config.ttl_s`` and otherwise returns a cached
:class:`Resolution`. A file that does not parse never changes the backend; the last good
one stays in force and the problem is logged once.

Reading, writing and checking the file itself is :mod:`ray_judge.selection.override_file`; its
writing functions are re-exported here for callers that think in terms of the resolver.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..config import JudgeConfig
from ..errors import InvalidSpecError
from ..spec import BackendSpec
from .override_file import (
    MAX_FILE_BYTES,
    permission_warnings,
    read_override,
    remove_override,
    write_override,
)

__all__ = [
    "MAX_FILE_BYTES",
    "BackendResolver",
    "Resolution",
    "Source",
    "permission_warnings",
    "read_override",
    "remove_override",
    "write_override",
]

logger = logging.getLogger(__name__)

Source = Literal["file", "env", "default"]


@dataclass(frozen=True)
class Resolution:
    """The effective backend at one moment, and why.

    Attributes:
        spec: the backend in force.
        source: where ``spec`` comes from: the override ``file``, ``env``
            (``LLM_JUDGE_NAME``) or the built-in ``default``.
        path: the absolute path of the override file that was looked at.
        problem: why the file's content is being ignored (it does not parse, is binary,
            too long, a directory, unreadable), or ``None``.
        checked_at: the resolver's clock when the file was last read.
    """

    spec: BackendSpec
    source: Source
    path: Path
    problem: str | None
    checked_at: float

    @property
    def where(self) -> str:
        """``source`` in words, for people: ``override file /abs/.judge_backend``."""
        if self.source == "file":
            return f"override file {self.path}"
        if self.source == "env":
            return "environment variable LLM_JUDGE_NAME"
        return "built-in default"


class BackendResolver:
    """Resolves the effective backend, reading the override file at most once per TTL.

    Thread-safe: many threads may call :meth:`resolve`; only one of them reads the file
    when the cached answer has expired.

    Example:
        >>> resolver = BackendResolver(JudgeConfig.from_env())
        >>> resolver.resolve().spec  # doctest: +SKIP
        BackendSpec(kind='ccode', name='ccode-4-sonnet')

    Args:
        config: the judge's settings (``backend_file``, ``ttl_s``, ``default_spec``).
        clock: a monotonic clock in seconds; tests pass a fake one instead of sleeping.
        reader: ``reader(path) -> bytes`` reading at most ``MAX_FILE_BYTES + 1`` bytes,
            raising ``FileNotFoundError`` when the file is absent and another ``OSError``
            when it cannot be read. Defaults to a bounded, non-blocking read.
    """

    def __init__(
        self,
        config: JudgeConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        reader: Callable[[Path], bytes] | None = None,
    ) -> None:
        self._config = config
        # Absolute once, now: a Ray worker's working directory is not the user's.
        self._path = Path(config.backend_file).absolute()
        self._clock = clock
        self._reader = reader or read_override
        self._lock = threading.Lock()
        self._cached: Resolution | None = None
        self._warned: str | None = None
        self._reads = 0

    @property
    def path(self) -> Path:
        """The absolute path of the override file."""
        return self._path

    @property
    def reads(self) -> int:
        """How many times the override file has been read (absent or not)."""
        return self._reads

    def resolve(self) -> Resolution:
        """The effective backend; reads the file only when the cached answer is older than
        ``config.ttl_s``."""
        cached = self._cached
        if cached is not None and self._clock() - cached.checked_at < self._config.ttl_s:
            return cached
        with self._lock:
            cached = self._cached
            # Another thread may have refreshed while this one waited for the lock.
            if cached is not None and self._clock() - cached.checked_at < self._config.ttl_s:
                return cached
            return self._refresh_locked()

    def refresh(self) -> Resolution:
        """Re-read the file now, whatever the TTL, and return the new answer."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> Resolution:
        now = self._clock()
        previous = self._cached
        file_spec, problem = self._read_file()
        if file_spec is not None:
            new = Resolution(file_spec, "file", self._path, None, now)
        elif problem is not None and previous is not None:
            new = replace(previous, problem=problem, checked_at=now)
        else:
            new = Resolution(self._fallback_spec(), self._fallback_source(), self._path,
                             problem, now)
        self._report(previous, new)
        self._cached = new
        return new

    def _read_file(self) -> tuple[BackendSpec | None, str | None]:
        """``(spec, None)``, ``(None, problem)``, or ``(None, None)`` when there is no file."""
        self._reads += 1
        try:
            data = self._reader(self._path)
        except FileNotFoundError:
            # A link whose target is gone is a broken override, not an absent one: going
            # back to the default without a word would change the reward unseen.
            if self._path.is_symlink():
                return None, f"override file {self._path} is a symlink to a missing file"
            return None, None
        except IsADirectoryError:
            return None, f"override file {self._path} is a directory, not a file"
        except OSError as exc:
            return None, f"cannot read override file {self._path}: {exc.strerror or exc}"
        if len(data) > MAX_FILE_BYTES:
            return None, (f"override file {self._path} is too long "
                          f"(more than {MAX_FILE_BYTES} bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, f"override file {self._path} is not UTF-8 text: {data[:40]!r}"
        try:
            return BackendSpec.parse(text), None
        except InvalidSpecError as exc:
            return None, f"override file {self._path}: {exc}"

    def _fallback_spec(self) -> BackendSpec:
        return self._config.default_spec

    def _fallback_source(self) -> Source:
        return "env" if self._config.default_source == "env" else "default"

    def _report(self, previous: Resolution | None, new: Resolution) -> None:
        # Once per distinct problem, not once per TTL; a fixed file re-arms the warning.
        if new.problem is not None and new.problem != self._warned:
            logger.warning("%s; keeping judge backend %s (%s)", new.problem, new.spec,
                           new.where)
        self._warned = new.problem
        if previous is None:
            logger.info("judge backend: %s (%s)", new.spec, new.where)
        elif (previous.spec, previous.source) != (new.spec, new.source):
            logger.info("judge backend: %s -> %s (%s)", previous.spec, new.spec, new.where)
