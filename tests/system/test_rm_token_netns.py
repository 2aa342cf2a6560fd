"""``ray-judge serve-rm`` beyond loopback, end to end: the reward server and OpenRLHF's
own client in a network namespace of the test's own, on 192.0.2.10 (TEST-NET-1) on a
link there: a non-loopback address that exists only inside this machine. The refusals
that need no cluster are tests/unit/test_rm_token.py.
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

REPO = Path(__file__).resolve().parents[2]
TOKEN = "a-token-of-24-characters"


def token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "rm.token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


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
