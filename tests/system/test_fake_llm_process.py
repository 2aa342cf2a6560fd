"""The fake LLM provider's process mode: a server in a child process, controlled over HTTP,
and ``python -m ray_judge.testing.fake_llm`` as a person runs it. The fake itself, in the
test's own process, is tests/unit/test_fake_llm.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ray_judge.testing import Behaviour, FakeLLMProcess, FakeLLMServer, RecordedRequest
from tests.unit.test_fake_llm import ANTHROPIC, MESSAGES, OPENAI, call


@pytest.fixture(scope="module")
def proc():
    with FakeLLMProcess(latency_s=0.01) as fake:
        yield fake


def test_process_serves_and_is_controlled_over_http(proc):
    proc.reset()
    proc.script(Behaviour.error(429, retry_after=2), Behaviour.ok("from the script"))
    assert call(proc.url, OPENAI, {"model": "m"})[0] == 429
    body = json.loads(call(proc.url, ANTHROPIC, {"model": "m", "messages": MESSAGES})[2])
    assert body["content"][0]["text"] == "from the script"
    proc.set_default(Behaviour.error(503))
    assert call(proc.url, OPENAI, {"model": "m"})[0] == 503
    recs = proc.requests()
    assert [r.path for r in recs] == [OPENAI, ANTHROPIC, OPENAI]
    assert all(isinstance(r, RecordedRequest) for r in recs)
    assert proc.model_calls() == 3
    proc.reset()
    assert proc.requests() == [] and call(proc.url, OPENAI, {"model": "m"})[0] == 200


def test_process_control_rejects_bad_input(proc):
    status, _, data = call(proc.url, "/_fake/script", [{"stauts": 1}])
    assert status == 400 and "unknown behaviour field" in json.loads(data)["error"]
    assert call(proc.url, "/_fake/script", {"not": "a list"})[0] == 400
    assert call(proc.url, "/_fake/default", [1])[0] == 400


def test_process_stop_reaps_and_is_idempotent():
    fake = FakeLLMProcess().start()
    pid = fake.pid
    assert fake.stop() == 0
    assert fake.stop() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", fake.port), timeout=1)


def test_process_exits_when_its_parent_goes_away():
    fake = FakeLLMProcess().start()
    proc = fake._proc
    proc.stdin.close()  # what the OS does when this process dies
    assert proc.wait(timeout=10) == 0
    fake.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_module_entry_point_prints_ready_and_stops_on_signal(sig):
    child = subprocess.Popen([sys.executable, "-m", "ray_judge.testing.fake_llm", "--port", "0",
                              "--latency", "0.05"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline().decode().strip()
        assert line.startswith("READY http://127.0.0.1:")
        start = time.monotonic()
        assert call(line.split()[1], OPENAI, {"model": "m"})[0] == 200
        assert time.monotonic() - start >= 0.05
        child.send_signal(sig)
        assert child.wait(timeout=10) == 0
        assert child.stderr.read() == b""  # no warnings, no traceback
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


def test_process_that_cannot_start_is_reported():
    with FakeLLMServer() as taken, pytest.raises(RuntimeError, match="exited with code"):
        FakeLLMProcess(port=taken.port, startup_timeout_s=20).start()
