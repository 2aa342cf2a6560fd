"""``ray-judge serve-rm`` beyond loopback: a token, or ``--insecure-no-token`` and a warning.

The refusals run through the real command (CliRunner) without a Ray cluster: each must
come before Ray is reached, so with RAY_ADDRESS unset a command that got past the checks
says "no Ray cluster found" instead. The end-to-end test runs the reward server and
OpenRLHF's own client in a network namespace of the test's own, on 192.0.2.10 (TEST-NET-1)
on a link there: a non-loopback address that exists only inside this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ray_judge.cli import app, format_live_status
from ray_judge.integrations.access import MAKE_TOKEN, is_loopback
from ray_judge.pool.reward_servers import EXPIRE_S, RewardServers

REPO = Path(__file__).resolve().parents[2]
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


# ------------------------------------------- OpenRLHF's client beyond loopback, for real

NS_ADDRESS = "192.0.2.10"  # TEST-NET-1: never routed; here only on the namespace's dummy
WAIT_S = 120.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns():
    """A network namespace of this test's own: its lo, and d0 with 192.0.2.10.

    d0 is a dummy link, or where the kernel has no dummy driver (this VM's) one end of a
    veth pair whose both ends are created in the namespace: nothing of the host's is
    touched either way."""
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")
    name = f"rjtest{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"`ip netns add` is not permitted here: {exc.stderr.strip()}")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        try:
            _ip("-n", name, "link", "add", "d0", "type", "dummy")
        except subprocess.CalledProcessError:
            _ip("-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
            _ip("-n", name, "link", "set", "d1", "up")
        _ip("-n", name, "addr", "add", f"{NS_ADDRESS}/24", "dev", "d0")
        _ip("-n", name, "link", "set", "d0", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def _in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_JUDGE_", "RAY_ADDRESS"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _wait_for(proc: subprocess.Popen, stream, prefix: str, seen: list[str]) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line and proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {prefix!r}: {''.join(seen)}")
        seen.append(line)
        if line.startswith(prefix):
            return line.split()[1]
    pytest.fail(f"no {prefix!r} within {WAIT_S:g}s: {''.join(seen)}")


def _serve_rm(ns: str, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        _in_ns(ns, sys.executable, "-m", "ray_judge.cli", "serve-rm", "--port", "0",
               "--failure-reward", "-0.5", *args),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    url = _wait_for(proc, proc.stderr, "READY ", seen)
    return proc, url, "".join(seen)


def _openrlhf(ns: str, env: dict[str, str], url: str) -> dict:
    out = subprocess.run(_in_ns(ns, sys.executable, "-m", "tests.rm_netns", "reward", url),
                         check=False, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=WAIT_S)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.ray
@pytest.mark.slow
def test_openrlhf_client_beyond_loopback_needs_the_token(netns, tmp_path) -> None:
    procs: list[subprocess.Popen] = []
    try:
        judge = subprocess.Popen(_in_ns(netns, sys.executable, "-m", "tests.rm_netns", "judge"),
                                 cwd=REPO, env=_env(), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        procs.append(judge)
        env = _env(RAY_ADDRESS=_wait_for(judge, judge.stdout, "READY ", []))

        rm, url, _ = _serve_rm(netns, env, "--host", NS_ADDRESS, "--token-file",
                               str(token_file(tmp_path)))
        procs.append(rm)
        assert url == f"http://{NS_ADDRESS}:{url.rsplit(':', 1)[1]}"
        refused = _openrlhf(netns, env, f"{url}/get_reward")
        assert "error" in refused, refused
        assert any("401" in line and "Unauthorized" in line for line in refused["log"]), refused
        served = _openrlhf(netns, env, url.replace("http://", f"http://rm:{TOKEN}@")
                           + "/get_reward")
        assert served == {"rewards": [0.8], "scores": [0.8],
                          "extra_logs": {"judge_ok": 1, "judge_failed": 0}}
        _stop(rm)

        # Every interface of the namespace, no token: it starts, and says so twice.
        open_rm, open_url, said = _serve_rm(netns, env, "--host", "0.0.0.0",
                                            "--insecure-no-token")
        procs.append(open_rm)
        assert "WARNING: the reward server on 0.0.0.0 listens beyond loopback without a " \
               "token" in said
        port = open_url.rsplit(":", 1)[1]
        assert _openrlhf(netns, env, f"http://{NS_ADDRESS}:{port}/get_reward")[
            "rewards"] == [0.8]
        status = subprocess.run(_in_ns(netns, sys.executable, "-m", "ray_judge.cli", "status"),
                                check=False, cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=WAIT_S)
        assert status.returncode == 0, status.stderr
        assert (f"  WARNING:  the reward server on http://0.0.0.0:{port}/get_reward (pid "
                f"{open_rm.pid}") in status.stdout, status.stdout
        assert "token required" not in status.stdout  # the stopped server said goodbye
    finally:
        for proc in reversed(procs):
            if proc is procs[0] and proc.stdin:
                proc.stdin.close()
            _stop(proc)
