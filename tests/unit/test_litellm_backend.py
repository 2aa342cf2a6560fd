"""LiteLLMBackend against the fake provider over real HTTP on 127.0.0.1 (no mocks of litellm).

The base URL reaches litellm through its own environment (``OPENAI_API_BASE``,
``ANTHROPIC_API_BASE``), as users configure it.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import pickle
import socket
import subprocess
import sys
import time

import pytest

from ray_judge.backends import create_backend
from ray_judge.backends.litellm_backend import LiteLLMBackend, load_litellm
from ray_judge.backends.litellm_errors import retry_after_seconds, scrub, translate_error
from ray_judge.config import JudgeConfig
from ray_judge.errors import (
    AuthError,
    BackendCallError,
    BackendTimeoutError,
    PermanentBackendError,
    RateLimitedError,
    TransientBackendError,
    UsageLimitedError,
)
from ray_judge.judging.runner import JudgeRunner
from ray_judge.prompt import JudgePrompt
from ray_judge.spec import BackendSpec
from ray_judge.testing import Behaviour, FakeLLMServer
from ray_judge.verdict import JudgeRequest, Status, Verdict

OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-sonnet-4-20250514"
UNPRICED = "anthropic/claude-3-opus-20240229"  # not in litellm's price list: cost is None
OPENAI_KEY = "sk-test-openai-PLANTED0123456789"
ANTHROPIC_KEY = "sk-ant-api03-PLANTED0123456789"
TIMEOUT = 1.0  # for the tests that wait for a timeout on purpose
GENEROUS = 20.0  # for everything else: a loaded CI machine must not turn ok into timeout
PROMPT = JudgePrompt(system="You are a judge. End with SCORE: N.", user="<<<RESPONSE>>> 4")
REQUEST = JudgeRequest(prompt="What is 2+2?", response="4", reference="4")


@pytest.fixture(scope="module")
def server():
    load_litellm()  # pay the import once, outside every timed attempt
    with FakeLLMServer() as srv, pytest.MonkeyPatch.context() as mp:
        # ... and litellm's lazy set-up on the first call of each provider.
        mp.setenv("OPENAI_API_BASE", f"{srv.url}/v1")
        mp.setenv("OPENAI_API_KEY", OPENAI_KEY)
        mp.setenv("ANTHROPIC_API_BASE", srv.url)
        mp.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        for model in (OPENAI, ANTHROPIC):
            asyncio.run(make(model).backend.complete(PROMPT, timeout=60))
        yield srv


@pytest.fixture(autouse=True)
def provider_env(server, monkeypatch):
    server.reset()
    monkeypatch.setenv("OPENAI_API_BASE", f"{server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_BASE", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class Sleeps:
    """An injected sleep: records the waits, never waits."""

    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(model=OPENAI, *, max_attempts=3, timeout_s=GENEROUS, sleep=None, **config):
    cfg = JudgeConfig(timeout_s=timeout_s, deadline_s=60.0, max_attempts=max_attempts,
                      backoff_s=0.1, max_backoff_s=1.0, **config)
    return JudgeRunner(LiteLLMBackend(BackendSpec.litellm(model), cfg),
                       sleep=sleep or Sleeps(), rng=lambda: 0.5)


def complete(runner, prompt=PROMPT, timeout=GENEROUS):
    return asyncio.run(runner.backend.complete(prompt, timeout=timeout))


def judge(backend, request=REQUEST):
    return asyncio.run(backend.judge(request))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- success ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_complete_sends_one_plain_request(server, model):
    completion = complete(make(model, max_tokens=321))
    assert completion.text == "The response matches the reference.\nSCORE: 8"
    assert completion.model == model.split("/", 1)[1]
    assert completion.input_tokens > 0 and completion.output_tokens > 0
    [rec] = server.requests
    body = rec.body
    assert body["max_tokens"] == 321 and body["temperature"] == 0.0
    assert not body.get("stream")
    if model.startswith("openai"):
        assert rec.path == "/v1/chat/completions"
        assert rec.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert body["messages"] == [{"role": "system", "content": PROMPT.system},
                                    {"role": "user", "content": PROMPT.user}]
    else:
        assert rec.path == "/v1/messages" and rec.headers["x-api-key"] == ANTHROPIC_KEY
        system = body["system"]
        text = system if isinstance(system, str) else "".join(b["text"] for b in system)
        assert text == PROMPT.system
        assert [m["role"] for m in body["messages"]] == ["user"]


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC, UNPRICED])
def test_judge_ok_verdict_end_to_end(server, model):
    verdict = judge(make(model))
    assert verdict.status is Status.OK and verdict.score == pytest.approx(0.8)
    assert verdict.backend == f"litellm:{model}" and verdict.attempts == 1
    assert verdict.model == model.split("/", 1)[1]
    assert verdict.input_tokens > 0 and verdict.output_tokens > 0
    assert verdict.cost_usd is None or isinstance(verdict.cost_usd, float)
    if model == UNPRICED:
        assert verdict.cost_usd is None
    if model == OPENAI:
        assert verdict.cost_usd > 0
    assert "<<<BEGIN RESPONSE>>>" in str(server.requests[-1].body["messages"][-1]["content"])
    assert pickle.loads(pickle.dumps(verdict)) == verdict


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_empty_content_is_a_parse_error_not_a_crash(server, model):
    if model.startswith("openai"):
        body = ('{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o-mini",'
                '"choices":[{"index":0,"message":{"role":"assistant","content":null},'
                '"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":0,'
                '"total_tokens":5}}')
    else:
        body = ('{"id":"x","type":"message","role":"assistant","model":"m","content":[],'
                '"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":0}}')
    server.script(Behaviour(body=body), Behaviour(body=body))
    assert complete(make(model)).text == ""
    verdict = judge(make(model))
    assert verdict.status is Status.PARSE_ERROR and verdict.score is None
    assert verdict.raw == "" and verdict.attempts == 1


def test_registry_builds_the_litellm_backend():
    backend = create_backend(BackendSpec.litellm(OPENAI), JudgeConfig())
    assert isinstance(backend, LiteLLMBackend) and backend.model == OPENAI


# -- the error mapping, row by row -------------------------------------------------------------

QUOTA = ('{"error":{"message":"You exceeded your current quota, please check your plan and '
         'billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}')
CTX = "This model's maximum context length is 8192 tokens. However, your messages resulted in"
ROWS = [  # id, behaviour, our error, attributes to check
    ("429-retry-after-seconds", Behaviour.error(429, retry_after=7), RateLimitedError,
     {"retry_after": 7.0, "http_status": 429}),
    ("429-retry-after-ms", Behaviour(status=429, text="slow down",
                                     headers={"retry-after-ms": "1500"}),
     RateLimitedError, {"retry_after": 1.5}),
    ("429-no-retry-after", Behaviour.error(429), RateLimitedError, {"retry_after": None}),
    ("429-insufficient-quota", Behaviour(status=429, body=QUOTA), UsageLimitedError,
     {"http_status": 429, "retry_after": None}),
    ("401", Behaviour.error(401, "invalid x-api-key"), AuthError, {"http_status": 401}),
    ("403", Behaviour.error(403, "not allowed"), AuthError, {"http_status": 403}),
    ("400", Behaviour.error(400, "bad request"), PermanentBackendError, {"http_status": 400}),
    ("400-context-window", Behaviour.error(400, CTX), PermanentBackendError, {}),
    ("404-no-such-model", Behaviour.error(404, "model not found"), PermanentBackendError,
     {"http_status": 404}),
    ("422", Behaviour.error(422, "unprocessable"), PermanentBackendError, {}),
    ("402", Behaviour.error(402, "credit balance is too low"), UsageLimitedError, {}),
    ("500", Behaviour.error(500), TransientBackendError, {"http_status": 500}),
    ("502", Behaviour.error(502), TransientBackendError, {"http_status": 502}),
    ("502-html", Behaviour(status=502, body="<html>bad gateway</html>",
                           headers={"content-type": "text/html"}), TransientBackendError, {}),
    ("503", Behaviour.error(503), TransientBackendError, {"http_status": 503}),
    ("529-overloaded", Behaviour.error(529, "Overloaded"), TransientBackendError, {}),
    ("504", Behaviour.error(504), BackendTimeoutError, {"http_status": 504}),
    ("dropped-connection", Behaviour.drop(), TransientBackendError, {}),
    ("malformed-body", Behaviour.malformed(), TransientBackendError, {}),
    ("empty-body", Behaviour(body=""), TransientBackendError, {}),
]


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
@pytest.mark.parametrize(("behaviour", "error", "attrs"),
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_error_mapping(server, model, behaviour, error, attrs):
    server.script(behaviour)
    with pytest.raises(BackendCallError) as info:
        complete(make(model))
    exc = info.value
    assert type(exc) is error, f"{type(exc).__name__}: {exc}"
    assert exc.backend == f"litellm:{model}" and str(exc)
    for name, value in attrs.items():
        assert getattr(exc, name) == value, name
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is error and str(copy) == str(exc)
    assert (copy.retry_after, copy.http_status) == (exc.retry_after, exc.http_status)


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_retry_after_as_http_date(server, model):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.script(Behaviour.error(429, retry_after=when))
    with pytest.raises(RateLimitedError) as info:
        complete(make(model))
    assert 25 <= info.value.retry_after <= 31


def test_subscription_usage_limit_is_usage_limited_with_reset(server):
    server.script(Behaviour.usage_limit(1_900_000_000))
    with pytest.raises(UsageLimitedError) as info:
        complete(make(ANTHROPIC))
    assert info.value.resets_at == 1_900_000_000 and not info.value.retryable
    verdict = judge_once(server, Behaviour.usage_limit(1_900_000_000), ANTHROPIC)
    assert verdict.status is Status.USAGE_LIMITED and verdict.attempts == 1
    assert verdict.resets_at == 1_900_000_000


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_connection_refused_is_transient(monkeypatch, model):
    port = closed_port()
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("ANTHROPIC_API_BASE", f"http://127.0.0.1:{port}")
    with pytest.raises(TransientBackendError) as info:
        complete(make(model))
    assert pickle.loads(pickle.dumps(info.value)).backend == f"litellm:{model}"


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_hang_times_out_within_the_attempt_timeout(server, model):
    server.script(Behaviour.hang())
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        complete(make(model), timeout=TIMEOUT)
    elapsed = time.monotonic() - start
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2.0, elapsed  # slack for a loaded machine


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_missing_api_key_is_an_auth_error(monkeypatch, model):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(AuthError):
        complete(make(model))


def test_unknown_provider_is_permanent():
    with pytest.raises(PermanentBackendError, match="Provider NOT provided"):
        complete(make("no-such-provider/foo"))


# -- through judge(): retries, statuses, attempts ------------------------------------------------

def judge_once(server, behaviour, model=OPENAI, **kwargs):
    server.default = behaviour
    try:
        return judge(make(model, **kwargs))
    finally:
        server.default = Behaviour()


@pytest.mark.parametrize(("behaviour", "status", "attempts"), [
    (Behaviour.error(401), Status.AUTH_ERROR, 1),
    (Behaviour.error(403), Status.AUTH_ERROR, 1),
    (Behaviour.error(400), Status.BACKEND_ERROR, 1),
    (Behaviour.error(404), Status.BACKEND_ERROR, 1),
    (Behaviour.error(500), Status.BACKEND_ERROR, 3),
    (Behaviour.error(502), Status.BACKEND_ERROR, 3),
    (Behaviour.error(503), Status.BACKEND_ERROR, 3),
    (Behaviour.error(504), Status.TIMEOUT, 3),
    (Behaviour.drop(), Status.BACKEND_ERROR, 3),
    (Behaviour.malformed(), Status.BACKEND_ERROR, 3),
], ids=["401", "403", "400", "404", "500", "502", "503", "504", "drop", "malformed"])
@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_judge_statuses_and_attempts(server, model, behaviour, status, attempts):
    verdict = judge_once(server, behaviour, model, max_attempts=3)
    assert verdict.status is status and verdict.score is None, verdict.error
    assert verdict.attempts == attempts and server.model_calls == attempts
    assert verdict.backend == f"litellm:{model}" and verdict.error
    assert pickle.loads(pickle.dumps(verdict)) == verdict


def test_judge_hang_is_a_timeout_and_returns_on_time(server):
    start = time.monotonic()
    verdict = judge_once(server, Behaviour.hang(), max_attempts=1, timeout_s=TIMEOUT)
    assert verdict.status is Status.TIMEOUT and verdict.attempts == 1
    assert time.monotonic() - start < TIMEOUT + 2.0


def test_judge_recovers_after_transient_errors(server):
    server.script(Behaviour.error(503), Behaviour.error(429, retry_after=0.25))
    sleeps = Sleeps()
    verdict = judge(make(max_attempts=3, sleep=sleeps))
    assert verdict.status is Status.OK and verdict.attempts == 3
    assert len(sleeps.waits) == 2 and sleeps.waits[1] == 0.25


def test_429_forever_keeps_attempts_bounded_and_follows_retry_after(server):
    server.default = Behaviour.error(429, retry_after=2)
    sleeps = Sleeps()
    backend = make(max_attempts=4, sleep=sleeps)

    async def many():
        return await asyncio.gather(*(backend.judge(REQUEST) for _ in range(10)))

    verdicts = asyncio.run(many())
    assert all(v.status is Status.RATE_LIMITED and v.score is None for v in verdicts)
    assert all(v.attempts == 4 and v.retry_after == 2.0 for v in verdicts)
    assert server.model_calls == 10 * 4  # no retry storm
    assert sleeps.waits == [2.0] * (10 * 3)  # Retry-After, not the 0.1 s backoff


# -- secrets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_no_api_key_in_error_messages(server, model):
    key = OPENAI_KEY if model.startswith("openai") else ANTHROPIC_KEY
    other = "sk-proj-NOTINENV9876543210abc"
    server.default = Behaviour.error(
        401, f"Incorrect API key provided: {key}. Also tried {other}; "
        f"headers were Authorization: Bearer {key} and x-api-key={key}")
    with pytest.raises(AuthError) as info:
        complete(make(model))
    verdict = judge(make(model))
    for text in (str(info.value), repr(info.value), verdict.error, str(pickle.dumps(verdict))):
        assert key not in text and other not in text and "PLANTED" not in text
    assert "***" in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("key sk-abcdefgh12345678 here", "key *** here"),
    ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer ***"),
    ("sent bearer abcdefgh12345678", "sent bearer ***"),
    ('{"api_key": "hunter2hunter2"}', '{"api_key": "***"}'),
    ("aws AKIAABCDEFGHIJKLMNOP", "aws ***"),
    ("nothing secret here: 429 Too Many Requests", "nothing secret here: 429 Too Many Requests"),
])
def test_scrub_patterns(text, expected):
    assert scrub(text, environ={}) == expected


def test_scrub_secret_environment_values():
    env = {"MY_SERVICE_TOKEN": "planted-value-42", "HOME": "/root/home-dir"}
    assert scrub("got planted-value-42 in /root/home-dir", env) == "got *** in /root/home-dir"


# -- pure pieces -------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "5"}, 5.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": email.utils.formatdate(NOW + 42, usegmt=True)}, 42.0),
    ({"retry-after": email.utils.formatdate(NOW - 42, usegmt=True)}, 0.0),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after_seconds(headers, expected):
    assert retry_after_seconds(headers, now=NOW) == expected


@pytest.mark.parametrize(("exc", "error"), [
    (ValueError("boom"), TransientBackendError),
    (TimeoutError(), BackendTimeoutError),
    (ConnectionRefusedError("refused"), TransientBackendError),
])
def test_translate_other_exceptions(exc, error):
    ours = translate_error(exc, backend="litellm:x", timeout=2.0)
    assert type(ours) is error and ours.backend == "litellm:x"
    assert type(pickle.loads(pickle.dumps(ours))) is error
    if isinstance(exc, ValueError):
        assert str(ours) == "unexpected ValueError: boom"
    if isinstance(exc, TimeoutError):
        assert str(ours) == "no answer within 2s"


def test_error_messages_are_capped():
    ours = translate_error(RuntimeError("x" * 5000))
    assert len(str(ours)) < 1100 and str(ours).endswith("[truncated]")


def test_litellm_is_loaded_once_and_quietly():
    litellm = load_litellm()
    assert load_litellm() is litellm and litellm.suppress_debug_info is True
    assert os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")


def test_importing_the_backend_module_does_not_import_litellm():
    code = ("import sys, ray_judge.backends.litellm_backend, ray_judge.testing.fake_llm; "
            "assert 'litellm' not in sys.modules, 'litellm imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_verdicts_of_every_failure_status_pickle():
    for status in Status:
        if status is Status.OK:
            v = Verdict(score=0.5, status=status, backend="litellm:x")
        else:
            v = Verdict.failure(status, "why", backend="litellm:x", retry_after=1.0)
        assert pickle.loads(pickle.dumps(v)) == v


FIRST_CALL = """
import asyncio, os, sys, time
outside = []
def audit(event, args):  # any DNS lookup or connect beyond loopback is a network attempt
    if event in ("socket.getaddrinfo", "socket.connect") and "127.0.0.1" not in repr(args):
        outside.append((event, repr(args)))
sys.addaudithook(audit)
from ray_judge.backends.litellm_backend import LiteLLMBackend
from ray_judge.config import JudgeConfig
from ray_judge.judging.runner import JudgeRunner
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest

async def main():
    backend = LiteLLMBackend(BackendSpec.litellm("openai/gpt-4o-mini"), JudgeConfig(timeout_s=60))
    gaps, stop = [], False
    async def tick():
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    ticker = asyncio.create_task(tick())
    verdict = await JudgeRunner(backend).judge(JudgeRequest(prompt="2+2?", response="4"))
    stop = True
    await ticker
    assert "litellm" in sys.modules and verdict.status == "ok", verdict
    assert max(gaps) < 1.0, max(gaps)  # the import ran in a thread, the loop kept going
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert not outside, outside

asyncio.run(main())
"""


def test_first_call_imports_litellm_off_the_event_loop_and_offline(server):
    # Without LITELLM_OFFLINE_MODE: the backend's own LITELLM_LOCAL_MODEL_COST_MAP default
    # must be enough to keep the import off the network.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LITELLM_OFFLINE_MODE", "LITELLM_LOCAL_MODEL_COST_MAP")}
    subprocess.run([sys.executable, "-c", FIRST_CALL], check=True, timeout=120, env=env)
