"""``launch.sh`` end to end, in subprocesses, as a person runs it.

Each test gets its own ``RAY_TMPDIR`` and free ports, so it neither finds nor disturbs
another Ray cluster on the machine. The judge runs the real LiteLLM backend against the
fake provider on 127.0.0.1; the programs launch.sh runs find it by its bare name.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_judge.testing import FakeLLMServer
from tests.ray_cluster import RAY_TEST_ENV

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-launch-0123456789abcdef"
WAIT_S = 60.0

# A program run by launch.sh: the training script of the design card. It scores one item
# and exits with the code it is given, so the test sees whether launch.sh passes it on.
SCRIPT = '''
import sys
import ray
{init}
judge = ray.get_actor("judge")
verdict = ray.get(judge.score.remote("What is 2+2?", "4", reference="4"), timeout=120)
print("VERDICT", verdict.status.value, verdict.backend,
      ray.get_runtime_context().namespace, flush=True)
sys.exit(int(sys.argv[1]))
'''


def free_port() -> int:
    # Below Linux's ephemeral range (32768-60999), where Ray and everyone else take
    # random ports, and above Ray's default worker ports (10002-19999).
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def processes_of(ray_tmpdir: Path) -> list[str]:
    """Processes that name ``ray_tmpdir`` on their command line or in their environment:
    Ray's daemons name their session directory, workers inherit RAY_TMPDIR."""
    marker, env_marker = str(ray_tmpdir).encode(), f"RAY_TMPDIR={ray_tmpdir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if marker in cmdline or env_marker in environ:
            words = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {words[:120]}")
    return found


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def launch(server, tmp_path) -> Iterator[Launch]:
    launcher = Launch(server, tmp_path)
    try:
        yield launcher
    finally:
        launcher.tidy()


class Launch:
    """Runs ``launch.sh`` with its own Ray temp dir, ports and a judge environment."""

    def __init__(self, server: FakeLLMServer, work: Path) -> None:
        self.work = work
        # Short: Ray puts AF_UNIX sockets under it (about 107 bytes at most).
        self.ray_tmpdir = Path(tempfile.mkdtemp(prefix="rjl", dir="/tmp"))
        self.port, self.dashboard_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "LLM_JUDGE_"))}
        env.update(RAY_TEST_ENV)
        env.update({
            "RAY_TMPDIR": str(self.ray_tmpdir),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHON": sys.executable,
            "LLM_JUDGE_NAME": "litellm:openai/m",
            "LLM_JUDGE_NUM_WORKERS": "1",
            "LLM_JUDGE_BACKEND_FILE": str(work / ".judge_backend"),
            "OPENAI_API_BASE": f"{server.url}/v1",
            "OPENAI_API_KEY": KEY,
        })
        self.env = env
        for name, init in (("bare.py", 'ray.init(address="auto")'),
                           ("namespaced.py", 'ray.init(namespace="ray_judge")')):
            (work / name).write_text(SCRIPT.format(init=init))

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        options = ["--port", str(self.port), "--dashboard-port", str(self.dashboard_port)]
        return subprocess.run([str(REPO / "launch.sh"), *options, *args], cwd=self.work,
                              env=self.env, capture_output=True, text=True, timeout=300,
                              check=False)

    @property
    def state_file(self) -> Path:
        return self.ray_tmpdir / "ray" / "ray_judge_launch_head"

    def ray_status(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ray", "status", "--address", f"127.0.0.1:{self.port}"],
                              env=self.env, capture_output=True, text=True, timeout=120,
                              check=False, cwd=self.work)

    def assert_nothing_left(self) -> None:
        """No process of this cluster, no port, and nothing recorded that a later
        launch.sh, ``ray status`` or the switch CLI would try to join.

        (``ray status`` itself is no witness here: with nothing recorded, Ray joins any
        cluster it finds among the machine's processes, and against a dead address it
        waits 40 s before it fails.)
        """
        deadline = time.monotonic() + WAIT_S
        while (left := processes_of(self.ray_tmpdir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, "\n".join(left)
        assert not listening(self.port) and not listening(self.dashboard_port)
        assert not self.state_file.exists()
        assert not (self.ray_tmpdir / "ray" / "ray_current_cluster").exists()

    def tidy(self) -> None:
        """After a failed test: stop the Ray processes this test started, by their group."""
        if self.state_file.exists():
            pgid = int(self.state_file.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        shutil.rmtree(self.ray_tmpdir, ignore_errors=True)


def test_launch_runs_a_command_and_stops_only_what_it_started(launch, server,
                                                              tmp_path) -> None:
    # A bystander on this machine with a Ray daemon's process name: `ray stop` would
    # terminate it (it matches processes by name, machine-wide); launch.sh must not.
    fake_raylet = tmp_path / "raylet"
    shutil.copy(shutil.which("sleep"), fake_raylet)
    bystander = subprocess.Popen([str(fake_raylet), "600"])
    try:
        server.clear()
        out = launch(sys.executable, "bare.py", "5")
        assert out.returncode == 5, out.stdout + out.stderr
        # ray.init(address="auto") with no namespace, then ray.get_actor("judge"): found
        # in ray_judge through launch.sh's shim; the model call reached the provider.
        assert "VERDICT ok litellm:openai/m ray_judge" in out.stdout, out.stdout + out.stderr
        assert f"starting a Ray head on 127.0.0.1:{launch.port}" in out.stdout
        (call,) = [r for r in server.requests if r.path.endswith("/chat/completions")]
        assert call.body["model"] == "m" and call.headers["authorization"] == f"Bearer {KEY}"
        launch.assert_nothing_left()
        assert bystander.poll() is None, "launch.sh killed a process it did not start"
    finally:
        bystander.kill()
        bystander.wait()


def test_launch_without_a_command_leaves_it_up_until_stop(launch) -> None:
    try:
        up = launch()
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Running judge: serving litellm:openai/m (source: env)" in up.stdout, up.stdout
        assert "Ray and the judge are up" in up.stdout
        assert "./launch.sh --stop" in up.stdout
        assert listening(launch.port) and launch.state_file.exists()
        assert processes_of(launch.ray_tmpdir)  # what assert_nothing_left looks for

        # A program that names the namespace itself, run against the running cluster;
        # launch.sh started nothing this time, so it stops nothing, and passes the
        # program's exit code on.
        out = launch(sys.executable, "namespaced.py", "4")
        assert out.returncode == 4, out.stdout + out.stderr
        assert "VERDICT ok litellm:openai/m ray_judge" in out.stdout, out.stdout + out.stderr
        assert "using the running Ray cluster" in out.stdout
        status = launch.ray_status()
        assert status.returncode == 0, status.stderr
    finally:
        stop = launch("--stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"stopped the Ray head at 127.0.0.1:{launch.port}" in stop.stdout
    launch.assert_nothing_left()


# A driver that joins the cluster with whatever token its environment gives it.
JOIN = '''
import sys
import ray
ray.init(address=sys.argv[1])
print("JOINED", flush=True)
'''


@pytest.mark.timeout(900)  # a head, three drivers (two refused), on a loaded box
def test_host_beyond_loopback_turns_on_token_authentication(launch, tmp_path) -> None:
    # The judge launch.sh starts (ray-judge start, a driver) already needs the token.
    # 127.0.0.2 is a loopback address, so nothing leaves this machine; launch.sh treats
    # every --host but 127.0.0.1/localhost as reachable by others.
    home = tmp_path / "home"
    home.mkdir()
    launch.env.pop("RAY_AUTH_MODE")
    launch.env["HOME"] = str(home)
    (tmp_path / "join.py").write_text(JOIN)
    address = f"127.0.0.2:{launch.port}"
    try:
        up = launch("--host", "127.0.0.2")
        assert up.returncode == 0, up.stdout + up.stderr
        token = home / ".ray" / "auth_token"
        assert f"generated a Ray authentication token in {token}" in up.stdout
        assert "token authentication is on" in up.stdout
        assert token.stat().st_mode & 0o777 == 0o600
        assert len(token.read_text().strip()) >= 16
        assert launch.state_file.read_text().split()[2] == "token"

        # What other nodes and drivers do: RAY_AUTH_MODE=token and the token file.
        joined = subprocess.run(
            [sys.executable, "join.py", address], cwd=tmp_path, capture_output=True,
            text=True, timeout=120, check=False,
            env={**launch.env, "RAY_AUTH_MODE": "token"})
        assert "JOINED" in joined.stdout, joined.stdout + joined.stderr
        # Without the token (or with a wrong one) the cluster refuses the driver.
        for wrong in ({"RAY_AUTH_MODE": "disabled"},
                      {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}):
            refused = subprocess.run(
                [sys.executable, "join.py", address], cwd=tmp_path, capture_output=True,
                text=True, timeout=180, check=False, env={**launch.env, **wrong})
            assert refused.returncode != 0 and "JOINED" not in refused.stdout, wrong
            assert "auth" in refused.stderr.lower(), refused.stderr[-2000:]
    finally:
        stop = launch("--stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"stopped the Ray head at {address}" in stop.stdout
    launch.assert_nothing_left()


def test_host_beyond_loopback_refuses_auth_disabled(launch) -> None:
    launch.env["RAY_AUTH_MODE"] = "disabled"
    out = launch("--host", "127.0.0.2")
    assert out.returncode == 2
    assert "RAY_AUTH_MODE=disabled would let anyone who reaches it run code" in out.stderr
    assert not launch.state_file.exists()
