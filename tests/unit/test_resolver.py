"""BackendResolver (file > env > default, TTL, last good on bad files) and the file on disk."""

from __future__ import annotations

import errno
import grp
import logging
import os
import pickle
import pwd
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ray_judge.config import JudgeConfig
from ray_judge.errors import OverrideFileError
from ray_judge.selection.resolver import (
    MAX_FILE_BYTES,
    BackendResolver,
    permission_warnings,
    read_override,
    remove_override,
    write_override,
)
from ray_judge.spec import BackendSpec

SONNET = BackendSpec.parse("ccode-4-sonnet")
OPUS = BackendSpec.parse("ccode-4-opus")
GPT = BackendSpec.parse("litellm:openai/gpt-4o")
CLAUDE3 = BackendSpec.parse("litellm:anthropic/claude-3-opus-20240229")
IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]
LOGGER = "ray_judge.selection.resolver"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".judge_backend"


def make(clock: FakeClock, env: dict[str, str] | None = None, **kwargs) -> BackendResolver:
    return BackendResolver(JudgeConfig.from_env(env or {}), clock=clock, **kwargs)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def infos_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.INFO]


# ----------------------------------------------------------------- resolution order


@pytest.mark.parametrize(("env", "file", "spec", "source", "where"), [
    ({}, None, SONNET, "default", "built-in default"),
    ({"LLM_JUDGE_NAME": "litellm:openai/gpt-4o"}, None, GPT, "env",
     "environment variable LLM_JUDGE_NAME"),
    ({}, OPUS, OPUS, "file", "override file"),
    ({"LLM_JUDGE_NAME": "litellm:openai/gpt-4o"}, OPUS, OPUS, "file", "override file"),
])
def test_order_file_then_env_then_default(clock, path, env, file, spec, source, where) -> None:
    if file is not None:
        write_override(path, file)
    resolution = make(clock, env).resolve()
    assert (resolution.spec, resolution.source, resolution.problem) == (spec, source, None)
    assert resolution.path == path
    assert resolution.where.startswith(where)
    assert resolution.checked_at == clock.now


def test_path_is_made_absolute_once_at_creation(clock, tmp_path, monkeypatch) -> None:
    resolver = BackendResolver(JudgeConfig(backend_file=Path("rel/.judge_backend")), clock=clock)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a Ray worker's cwd is not the user's
    assert resolver.path == tmp_path / "rel" / ".judge_backend"
    assert resolver.resolve().path == tmp_path / "rel" / ".judge_backend"


def test_backend_file_from_env(clock, tmp_path) -> None:
    write_override(tmp_path / "custom", GPT)
    resolver = make(clock, {"LLM_JUDGE_BACKEND_FILE": "custom"})
    assert (resolver.resolve().spec, resolver.path) == (GPT, tmp_path / "custom")


# ------------------------------------------------------------------------------ TTL


def test_file_is_read_at_most_once_per_ttl(clock, path) -> None:
    write_override(path, OPUS)
    resolver = make(clock)
    assert resolver.resolve().spec == OPUS
    write_override(path, GPT)
    clock.advance(4.99)
    assert (resolver.resolve().spec, resolver.reads) == (OPUS, 1)
    clock.advance(0.01)
    assert (resolver.resolve().spec, resolver.reads) == (GPT, 2)


def test_ttl_is_configurable(clock, path) -> None:
    resolver = make(clock, {"LLM_JUDGE_BACKEND_TTL": "0.5"})
    resolver.resolve()
    write_override(path, GPT)
    clock.advance(0.5)
    assert resolver.resolve().spec == GPT


def test_ttl_zero_reads_every_time(clock) -> None:
    resolver = make(clock, {"LLM_JUDGE_BACKEND_TTL": "0"})
    for _ in range(5):
        resolver.resolve()
    assert resolver.reads == 5


def test_ten_thousand_calls_within_one_ttl_read_the_file_once(clock, path) -> None:
    write_override(path, GPT)
    resolver = make(clock)
    for _ in range(10_000):
        assert resolver.resolve().spec == GPT
    assert resolver.reads == 1


def test_many_threads_within_one_ttl_read_the_file_once(path) -> None:
    write_override(path, GPT)
    resolver = BackendResolver(JudgeConfig.from_env({}))  # the real clock
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        for _ in range(2_000):
            resolver.resolve()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert resolver.reads == 1


def test_refresh_reads_now_whatever_the_ttl(clock, path) -> None:
    resolver = make(clock)
    assert resolver.resolve().spec == SONNET
    write_override(path, CLAUDE3)
    assert resolver.resolve().spec == SONNET
    assert resolver.refresh().spec == CLAUDE3
    assert resolver.resolve().spec == CLAUDE3
    assert resolver.reads == 2


def test_injected_reader_is_used_and_counted(clock) -> None:
    seen: list[Path] = []

    def reader(p: Path) -> bytes:
        seen.append(p)
        return b"litellm:openai/gpt-4o\n"

    resolver = make(clock, reader=reader)
    assert resolver.resolve().spec == GPT
    assert seen == [resolver.path]
    assert resolver.reads == 1


# ------------------------------------------------------------- bad files, deleted files


def _garbage(p: Path) -> None:
    p.write_text("garbage\n")


def _binary(p: Path) -> None:
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")


def _too_long(p: Path) -> None:
    p.write_text("litellm:" + "m" * (MAX_FILE_BYTES * 4))


def _just_over_the_spec_limit(p: Path) -> None:
    p.write_text("litellm:" + "m" * 300)


def _empty(p: Path) -> None:  # ``echo > file`` as seen mid-write by a hand edit
    p.write_text("")


def _half_written(p: Path) -> None:
    p.write_text("litellm:")


def _two_lines(p: Path) -> None:
    p.write_text("ccode-4-sonnet\nlitellm:openai/gpt-4o\n")


def _directory(p: Path) -> None:
    p.mkdir()


def _fifo(p: Path) -> None:  # reading it must not block the hot path
    os.mkfifo(p)


BAD_FILES = {
    "garbage": (_garbage, "unknown backend prefix"),
    "binary": (_binary, "not UTF-8"),
    "too long": (_too_long, "too long"),
    "over the spec limit": (_just_over_the_spec_limit, "longer than 256"),
    "empty": (_empty, "empty"),
    "half written": (_half_written, "model is empty"),
    "two lines": (_two_lines, "line break"),
    "directory": (_directory, "is a directory"),
    "fifo": (_fifo, "not a regular file"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize(("env", "fallback", "source"), [
    ({}, SONNET, "default"),
    ({"LLM_JUDGE_NAME": "ccode-4-opus"}, OPUS, "env"),
])
def test_bad_file_at_first_start_falls_back(clock, path, caplog, kind, env, fallback,
                                            source) -> None:
    make_bad, why = BAD_FILES[kind]
    make_bad(path)
    resolution = make(clock, env).resolve()
    assert (resolution.spec, resolution.source) == (fallback, source)
    assert why in resolution.problem
    assert str(path) in resolution.problem
    assert len(warnings_of(caplog)) == 1


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_keeps_last_good_and_warns_once(clock, path, caplog, kind) -> None:
    make_bad, why = BAD_FILES[kind]
    resolver = make(clock, {"LLM_JUDGE_NAME": "ccode-4-opus"})
    write_override(path, GPT)
    assert resolver.resolve().spec == GPT
    path.unlink()
    make_bad(path)
    for _ in range(5):  # five TTLs: still one warning
        clock.advance(5)
        resolution = resolver.resolve()
        assert (resolution.spec, resolution.source) == (GPT, "file")
        assert why in resolution.problem
    assert resolver.reads == 6
    assert len(warnings_of(caplog)) == 1
    assert why in warnings_of(caplog)[0]
    assert "keeping judge backend litellm:openai/gpt-4o" in warnings_of(caplog)[0]


def test_fixing_the_file_switches_and_rearms_the_warning(clock, path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    resolver = make(clock)
    write_override(path, GPT)
    resolver.resolve()
    path.write_text("garbage")
    assert resolver.refresh().problem is not None
    write_override(path, CLAUDE3)
    resolution = resolver.refresh()
    assert (resolution.spec, resolution.problem) == (CLAUDE3, None)
    assert infos_of(caplog)[-1] == (
        f"judge backend: litellm:openai/gpt-4o -> {CLAUDE3} (override file {path})")
    path.write_text("garbage")
    resolver.refresh()
    assert len(warnings_of(caplog)) == 2  # a new breakage is news again


def test_each_distinct_problem_is_warned_once(clock, path, caplog) -> None:
    resolver = make(clock)
    for text in ["garbage-one", "garbage-one", "garbage-two", "garbage-two"]:
        path.write_text(text)
        resolver.refresh()
    assert len(warnings_of(caplog)) == 2


def test_unreadable_file_keeps_last_good(clock, path) -> None:
    answers: list[bytes | OSError] = [b"litellm:openai/gpt-4o",
                                      PermissionError(errno.EACCES, "Permission denied")]

    def reader(_: Path) -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    resolver = make(clock, reader=reader)
    resolver.resolve()
    resolution = resolver.refresh()
    assert resolution.spec == GPT
    assert resolution.problem == f"cannot read override file {path}: Permission denied"


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode")
def test_unreadable_file_for_real(clock, path) -> None:
    write_override(path, GPT)
    path.chmod(0)
    assert "Permission denied" in make(clock).resolve().problem


@pytest.mark.parametrize(("env", "fallback", "where"), [
    ({}, SONNET, "built-in default"),
    ({"LLM_JUDGE_NAME": "ccode-4-opus"}, OPUS, "environment variable LLM_JUDGE_NAME"),
])
def test_deleted_file_falls_back(clock, path, caplog, env, fallback, where) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    write_override(path, GPT)
    resolver = make(clock, env)
    assert resolver.resolve().source == "file"
    assert remove_override(path)
    clock.advance(5)
    resolution = resolver.resolve()
    assert (resolution.spec, resolution.problem, resolution.where) == (fallback, None, where)
    assert infos_of(caplog)[-1] == f"judge backend: litellm:openai/gpt-4o -> {fallback} ({where})"


def test_every_change_is_logged_at_info_and_nothing_else(clock, path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    resolver = make(clock, {"LLM_JUDGE_NAME": "ccode-4-sonnet"})
    resolver.resolve()
    for _ in range(3):  # re-reads that change nothing log nothing
        clock.advance(5)
        resolver.resolve()
    write_override(path, SONNET)  # same spec, new source: still worth a line
    resolver.refresh()
    write_override(path, GPT)
    resolver.refresh()
    assert infos_of(caplog) == [
        "judge backend: ccode-4-sonnet (environment variable LLM_JUDGE_NAME)",
        f"judge backend: ccode-4-sonnet -> ccode-4-sonnet (override file {path})",
        f"judge backend: ccode-4-sonnet -> litellm:openai/gpt-4o (override file {path})",
    ]
    assert warnings_of(caplog) == []


def test_resolution_is_frozen(clock) -> None:
    resolution = make(clock).resolve()
    with pytest.raises(AttributeError):
        resolution.spec = GPT  # type: ignore[misc]


def test_read_override_is_bounded(path) -> None:
    path.write_bytes(b"x" * 1_000_000)
    assert len(read_override(path)) == MAX_FILE_BYTES + 1


# -------------------------------------------------------------------------- writing


def test_write_override_writes_one_line_0644_and_no_litter(path) -> None:
    written = write_override(path, CLAUDE3)
    assert written == path
    assert path.read_bytes() == b"litellm:anthropic/claude-3-opus-20240229\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~umask
    assert os.listdir(path.parent) == [path.name]


def test_write_override_keeps_the_existing_mode(path) -> None:
    write_override(path, GPT)
    path.chmod(0o600)
    write_override(path, OPUS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_override_through_a_symlink_keeps_the_link(tmp_path, path) -> None:
    real = tmp_path / "shared" / "backend"
    real.parent.mkdir()
    path.symlink_to(real)
    write_override(path, GPT)
    assert path.is_symlink()
    assert real.read_text() == "litellm:openai/gpt-4o\n"


def _fail_on(name: str):
    real = getattr(os, name)

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    return name, boom, real


@pytest.mark.parametrize("step", ["write", "fsync", "replace", "fchmod"])
def test_failed_write_leaves_the_old_file_and_no_temp_files(path, monkeypatch, step) -> None:
    write_override(path, GPT)
    name, boom, _ = _fail_on(step)
    monkeypatch.setattr(os, name, boom)
    with pytest.raises(OverrideFileError) as info:
        write_override(path, OPUS)
    monkeypatch.undo()
    assert str(info.value) == f"cannot write override file {path}: No space left on device"
    assert info.value.path == str(path)
    assert path.read_text() == "litellm:openai/gpt-4o\n"
    assert os.listdir(path.parent) == [path.name]
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), str(again), again.path) == (OverrideFileError, str(info.value), str(path))


@pytest.mark.parametrize(("make_parent", "reason"), [
    (lambda parent: None, "No such file or directory"),
    (lambda parent: parent.write_text("a file, not a directory"), "Not a directory"),
])
def test_write_into_an_impossible_directory(tmp_path, make_parent, reason) -> None:
    parent = tmp_path / "parent"
    make_parent(parent)
    with pytest.raises(OverrideFileError, match=f"{parent / 'x'}: {reason}"):
        write_override(parent / "x", GPT)


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only directories")
def test_write_into_a_read_only_directory(tmp_path, path) -> None:
    write_override(path, GPT)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OverrideFileError, match="Permission denied"):
            write_override(path, OPUS)
    finally:
        tmp_path.chmod(0o755)
    assert path.read_text() == "litellm:openai/gpt-4o\n"


def test_write_onto_a_directory_fails_cleanly(path) -> None:
    path.mkdir()
    with pytest.raises(OverrideFileError, match="Is a directory"):
        write_override(path, GPT)
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_remove_override(path) -> None:
    assert remove_override(path) is False
    write_override(path, GPT)
    assert remove_override(path) is True
    assert not path.exists()
    assert remove_override(path) is False


def test_remove_a_directory_is_an_error_naming_it(path) -> None:
    path.mkdir()
    with pytest.raises(OverrideFileError, match=f"cannot remove override file {path}: "):
        remove_override(path)
    assert path.is_dir()


# ------------------------------------------------------------ a writer and a reader

WRITER = """
import sys, time
from ray_judge.selection.resolver import write_override
from ray_judge.spec import BackendSpec
specs = [BackendSpec.parse(sys.argv[2]), BackendSpec.parse(sys.argv[3])]
deadline = time.monotonic() + float(sys.argv[4])
n = 0
while time.monotonic() < deadline:
    write_override(sys.argv[1], specs[n % 2])
    n += 1
print(n)
"""


def test_concurrent_writer_and_reader_never_see_a_torn_or_empty_file(path) -> None:
    write_override(path, GPT)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(GPT), str(CLAUDE3), "2"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    allowed = {f"{GPT}\n".encode(), f"{CLAUDE3}\n".encode()}
    seen: dict[bytes, int] = {}
    resolver = BackendResolver(JudgeConfig.from_env({"LLM_JUDGE_BACKEND_TTL": "0"}))
    deadline = time.monotonic() + 10
    while writer.poll() is None and time.monotonic() < deadline:
        with open(path, "rb") as f:
            data = f.read()
        seen[data] = seen.get(data, 0) + 1
        assert resolver.resolve().problem is None
    writes = int(writer.communicate(timeout=10)[0])
    assert writer.returncode == 0
    assert set(seen) <= allowed, {k[:60]: v for k, v in seen.items() if k not in allowed}
    assert writes > 20 and sum(seen.values()) > 100
    assert os.listdir(path.parent) == [path.name]


# --------------------------------------------------------------------- permissions


def test_private_file_and_directory_have_no_warnings(tmp_path, path) -> None:
    tmp_path.chmod(0o755)
    write_override(path, GPT)
    path.chmod(0o644)
    assert permission_warnings(path) == []


def test_world_writable_file_and_directory_are_reported(tmp_path, path) -> None:
    write_override(path, GPT)
    path.chmod(0o666)
    tmp_path.chmod(0o777)
    assert permission_warnings(path) == [
        f"override file {path} is writable by every user (mode 0666)",
        f"directory {tmp_path} is writable by every user (mode 0777)",
    ]


def test_sticky_directory_protects_an_existing_file_only(tmp_path, path) -> None:
    tmp_path.chmod(0o1777)
    assert permission_warnings(path) == [
        f"directory {tmp_path} is writable by every user (mode 1777)"]
    write_override(path, GPT)
    assert permission_warnings(path) == []


@pytest.mark.skipif(not IS_ROOT, reason="needs to chown the file to another group")
def test_group_writable_in_a_shared_group_is_reported(tmp_path, path) -> None:
    group = next((g for g in grp.getgrall() if g.gr_gid != os.getegid()), None)
    if group is None:
        pytest.skip("no second group on this machine")
    tmp_path.chmod(0o755)
    write_override(path, GPT)
    os.chown(path, -1, group.gr_gid)
    path.chmod(0o664)
    assert permission_warnings(path) == [
        f"override file {path} is writable by group {group.gr_name} (mode 0664)"]


@pytest.mark.skipif(not IS_ROOT, reason="needs to chown the file to another user")
def test_file_owned_by_another_user_is_reported(tmp_path, path) -> None:
    tmp_path.chmod(0o755)
    write_override(path, GPT)
    os.chown(path, 65534, -1)
    try:
        owner = pwd.getpwuid(65534).pw_name
    except KeyError:
        owner = "uid 65534"
    assert permission_warnings(path) == [
        f"override file {path} is owned by another user ({owner})"]
