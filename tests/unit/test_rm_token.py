"""``ray-judge serve-rm`` beyond loopback: a token, or ``--insecure-no-token`` and a warning.

The refusals run through the real command (CliRunner) without a Ray cluster: each must
come before Ray is reached, so with RAY_ADDRESS unset a command that got past the checks
says "no Ray cluster found" instead. The end-to-end test, OpenRLHF's own client against a
reward server in a network namespace, is tests/system/test_rm_token_netns.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ray_judge.cli import app, format_live_status
from ray_judge.integrations.access import MAKE_TOKEN, is_loopback
from ray_judge.pool.reward_servers import EXPIRE_S, RewardServers

TOKEN = "a-token-of-24-characters"
NO_RAY = "no Ray cluster found here"
runner = CliRunner()


def serve_rm(*args: str):
    return runner.invoke(app, ["serve-rm", "--failure-reward", "0", *args],
                         env={"RAY_ADDRESS": ""})


def token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "rm.token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


# ------------------------------------------------------------------------- loopback


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("LocalHost.", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.10", False),
    ("10.0.0.5", False), ("fe80::1", False), ("[::1]", False),
    ("node-7.cluster", False),  # a name is not resolved: not provably loopback
])
def test_which_hosts_are_loopback(host, loopback) -> None:
    assert is_loopback(host) is loopback


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "node-7.cluster"])
def test_beyond_loopback_without_a_token_is_refused(host) -> None:
    result = serve_rm("--host", host, "--port", "5000")
    assert result.exit_code == 1
    assert f"error: --host {host!r} is not a loopback address" in result.stderr
    assert MAKE_TOKEN in result.stderr
    where = "NODE" if host in ("0.0.0.0", "::") else host
    assert f"--reward.remote_url http://rm:TOKEN@{where}:5000/get_reward" in result.stderr
    assert "--insecure-no-token" in result.stderr
    assert NO_RAY not in result.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_a_token_file_others_can_reach_is_refused(tmp_path, mode) -> None:
    path = token_file(tmp_path, mode=mode)
    result = serve_rm("--host", "0.0.0.0", "--token-file", str(path))
    assert result.exit_code == 1
    assert (f"error: permissions {mode:04o} for --token-file {path} are too open"
            in result.stderr)
    assert f"run: chmod 600 {path}" in result.stderr
    # On loopback too: a token that others can read is no token.
    assert serve_rm("--token-file", str(path)).exit_code == 1


def test_a_short_token_is_refused(tmp_path) -> None:
    path = token_file(tmp_path, "x" * 15)
    result = serve_rm("--host", "192.0.2.10", "--token-file", str(path))
    assert result.exit_code == 1
    assert (f"error: the token in --token-file {path} has 15 characters; at least 16 are "
            "required" in result.stderr)
    assert MAKE_TOKEN in result.stderr
    assert "x" * 15 not in result.stderr


def test_a_missing_token_file_and_contradicting_flags_are_refused(tmp_path) -> None:
    missing = serve_rm("--host", "0.0.0.0", "--token-file", str(tmp_path / "none"))
    assert missing.exit_code == 1
    assert f"error: cannot read --token-file {tmp_path / 'none'}" in missing.stderr
    both = serve_rm("--host", "0.0.0.0", "--insecure-no-token", "--token-file",
                    str(token_file(tmp_path)))
    assert both.exit_code == 1
    assert "--insecure-no-token and --token-file contradict each other" in both.stderr


@pytest.mark.parametrize("args", [
    (),  # loopback needs no token
    ("--host", "::1"),
    ("--host", "0.0.0.0", "--insecure-no-token"),
    ("--host", "0.0.0.0", "--token-file", "{token}"),
])
def test_what_passes_the_checks_goes_on_to_ray(tmp_path, args) -> None:
    args = [a.format(token=token_file(tmp_path)) for a in args]
    result = serve_rm(*args)
    assert result.exit_code == 1
    assert NO_RAY in result.stderr


# ---------------------------------------------------------------------------- status


def record(pid: int, *, token: bool, insecure: bool) -> dict:
    return {"id": f"n:{pid}", "url": f"http://0.0.0.0:{pid}/get_reward", "token": token,
            "insecure": insecure, "node": "n", "pid": pid}


def test_announced_servers_expire_unless_heard_from_again() -> None:
    now = [0.0]
    servers = RewardServers(clock=lambda: now[0])
    servers.note(record(1, token=True, insecure=False))
    servers.note({**record(2, token=False, insecure=True), "extra": "dropped"})
    assert [r["pid"] for r in servers.snapshot()] == [1, 2]
    assert "extra" not in servers.snapshot()[1]
    now[0] = EXPIRE_S - 1
    servers.note(record(2, token=False, insecure=True))
    servers.note(record(1, token=True, insecure=False), running=False)  # its goodbye
    now[0] = EXPIRE_S + 1
    assert [r["pid"] for r in servers.snapshot()] == [2]
    now[0] = 2 * EXPIRE_S  # killed: no goodbye, no announcement
    assert servers.snapshot() == []
    with pytest.raises(TypeError, match="'token' as bool"):
        servers.note({**record(3, token=True, insecure=False), "token": "yes"})


def test_status_warns_about_a_server_without_a_token() -> None:
    status = {"backend": "b", "source": "s", "uptime_s": 1, "workers": 1, "queued": 0,
              "total": 0, "latency_p50_s": None, "latency_p95_s": None, "retries": 0,
              "switches": 0, "cost_usd": 0.0,
              "reward_servers": [record(7, token=False, insecure=True),
                                 record(8, token=True, insecure=False),
                                 record(9, token=False, insecure=False)]}
    lines = format_live_status(status).splitlines()[-3:]
    assert lines[0] == (
        "  WARNING:  the reward server on http://0.0.0.0:7/get_reward (pid 7 on n) listens "
        "beyond loopback without a token: anyone who can reach it can read what the judge "
        "is asked and set the rewards the trainer gets (--insecure-no-token)")
    assert lines[1] == "  reward:   http://0.0.0.0:8/get_reward (pid 8 on n), token required"
    assert lines[2].endswith("(pid 9 on n), loopback only, no token")
