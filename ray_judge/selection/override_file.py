"""The ``.judge_backend`` override file on disk: read bounded, written atomically.

:func:`write_override` replaces the file in one ``rename``, so a reader (the
:class:`~ray_judge.selection.resolver.BackendResolver` of a running judge) sees the old content or
the new, never an empty or half-written file. :func:`read_override` never reads more than a
few KiB and never blocks. :func:`permission_warnings` says who else could change the judge,
and so the reward, through the file.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import pwd
import secrets
import stat
from pathlib import Path

from ..errors import OverrideFileError
from ..spec import BackendSpec

__all__ = [
    "MAX_FILE_BYTES",
    "permission_warnings",
    "read_override",
    "remove_override",
    "write_override",
]

logger = logging.getLogger(__name__)

#: A real override file is one short line; anything bigger is not one, and a hot path
#: must not read a log file someone pointed ``LLM_JUDGE_BACKEND_FILE`` at by mistake.
MAX_FILE_BYTES = 4096


def read_override(path: Path) -> bytes:
    """Read at most ``MAX_FILE_BYTES + 1`` bytes of the override file, never blocking.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        IsADirectoryError: ``path`` is a directory.
        OSError: anything else that makes the file unreadable, or not a regular file.
    """
    # O_NONBLOCK: a FIFO someone left at the path must not hang the judge's hot path.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_override(path: Path | str, spec: BackendSpec) -> Path:
    """Replace the override file with ``spec`` atomically and durably.

    The content goes to a temporary file in the same directory, is fsynced, and is renamed
    over ``path``, so a concurrent reader sees the old spec or the new one, never an empty
    or partial file. A new file gets mode 0644 (less the umask); an existing one keeps its
    mode.

    Returns:
        The absolute path written.

    Raises:
        OverrideFileError: the file could not be written; its message names the path and
            the OS reason. The existing file is untouched and no temporary file is left.
    """
    target = Path(path).absolute()
    # Write through a symlink rather than replace it: the link may be how the user shares it.
    real = Path(os.path.realpath(target))
    tmp = real.with_name(f".{real.name}.{secrets.token_hex(8)}.tmp")
    data = f"{spec}\n".encode()
    created = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        created = True
        try:
            with _suppress_missing():
                os.fchmod(fd, stat.S_IMODE(os.stat(real).st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except BaseException as exc:
        if created:
            with _suppress_missing():
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OverrideFileError(
                f"cannot write override file {target}: {_reason(exc)}", path=str(target)
            ) from exc
        raise
    _fsync_dir(real.parent)
    return target


def remove_override(path: Path | str) -> bool:
    """Delete the override file.

    Returns:
        ``True`` if a file was removed, ``False`` if there was none.

    Raises:
        OverrideFileError: the path exists but cannot be removed (a directory, no
            permission); the message names the path and the OS reason.
    """
    target = Path(path).absolute()
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OverrideFileError(
            f"cannot remove override file {target}: {_reason(exc)}", path=str(target)
        ) from exc
    _fsync_dir(target.parent)
    return True


def permission_warnings(path: Path | str) -> list[str]:
    """Who besides its owner could change the judge, and so the reward, through ``path``.

    Returns:
        One sentence per risk: the file or its directory writable by other users or a
        shared group, or the file owned by another user. Empty when there is none.
    """
    target = Path(path).absolute()
    try:
        file_stat: os.stat_result | None = os.stat(target)
    except OSError:
        file_stat = None
    out: list[str] = []
    if file_stat is not None:
        if file_stat.st_uid not in (os.geteuid(), 0):
            out.append(f"override file {target} is owned by another user "
                       f"({_user_name(file_stat.st_uid)})")
        who = _other_writers(file_stat)
        if who:
            out.append(f"override file {target} is writable by {who} "
                       f"(mode {stat.S_IMODE(file_stat.st_mode):04o})")
    try:
        dir_stat = os.stat(target.parent)
    except OSError:
        return out
    who = _other_writers(dir_stat)
    # In a sticky directory (/tmp) others cannot replace a file they do not own, but they
    # can still create it while it is absent.
    if who and not (dir_stat.st_mode & stat.S_ISVTX and file_stat is not None):
        out.append(f"directory {target.parent} is writable by {who} "
                   f"(mode {stat.S_IMODE(dir_stat.st_mode):04o})")
    return out


def _other_writers(st: os.stat_result) -> str | None:
    if st.st_mode & stat.S_IWOTH:
        return "every user"
    if st.st_mode & stat.S_IWGRP and _group_is_shared(st):
        return f"group {_group_name(st.st_gid)}"
    return None


def _group_is_shared(st: os.stat_result) -> bool:
    # Debian, Ubuntu and Fedora give each user a private group of the same name and a
    # umask of 002; a group-writable file in such a group is no wider than its owner.
    try:
        owner = pwd.getpwuid(st.st_uid)
        group = grp.getgrgid(st.st_gid)
    except KeyError:
        return True
    private = group.gr_gid == owner.pw_gid and group.gr_name == owner.pw_name
    return not private or bool(set(group.gr_mem) - {owner.pw_name})


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _suppress_missing() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(FileNotFoundError)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself survive a crash. Some file systems refuse to fsync a
    # directory; that costs durability only, never the atomicity readers rely on.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        logger.debug("cannot fsync directory %s: %s", directory, exc)
    finally:
        os.close(fd)
