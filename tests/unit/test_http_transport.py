"""The lean transport against LiteLLM's own, side by side, through the fake provider.

Every case runs twice, once with ``LLM_JUDGE_LITELLM_TRANSPORT=litellm`` (today's path:
``litellm.acompletion``) and once with ``lean`` (one aiohttp session), against the same
``FakeLLMServer`` behaviour, and compares what reached the wire (the JSON body and the
headers that mean something) and what came back (the Completion with its tokens and
cost, or the Verdict's status, ``retry_after`` and error text). No mocks: real HTTP on
127.0.0.1, real litellm.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import time
from typing import ClassVar

import pytest

from ray_judge.backends.http_transport import proxy_for
from ray_judge.backends.litellm_backend import LiteLLMBackend, load_litellm
from ray_judge.backends.litellm_route import Route, plan_route, route_from_capture
from ray_judge.config import JudgeConfig
from ray_judge.judging.runner import JudgeRunner
from ray_judge.prompt import JudgePrompt
from ray_judge.spec import BackendSpec
from ray_judge.testing import Behaviour, FakeLLMServer
from ray_judge.verdict import JudgeRequest
from tests.unit.fake_providers import KEYS

pytestmark = pytest.mark.usefixtures("provider_env")

OPENAI = "openai/gpt-4o-mini"
REASONING = "openai/o3-mini"  # LiteLLM turns system into user, max_tokens into
# max_completion_tokens, and drops temperature
VLLM = "hosted_vllm/Qwen/Qwen3-8B"
ANTHROPIC = "anthropic/claude-sonnet-4-5"
UNPRICED = "anthropic/claude-3-opus-20240229"
MODELS = [OPENAI, REASONING, VLLM, ANTHROPIC, UNPRICED]
GENEROUS = 30.0
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"},
                                           "why": {"type": "string"}},
          "required": ["score"]}
BASE = JudgePrompt(system="You are a judge. End with SCORE: N.",
                   user="<<<BEGIN RESPONSE>>>\n4\n<<<END RESPONSE>>>")
SHAPES = {
    "system+user": BASE,
    "correction-turns": JudgePrompt(
        BASE.system, BASE.user, turns=({"role": "assistant", "content": "It is fine."},
                                       {"role": "user", "content": "End with SCORE: N."})),
    "temperature": JudgePrompt(BASE.system, BASE.user, temperature=0.7),
    "max-tokens": JudgePrompt(BASE.system, BASE.user, max_tokens=77),
    "json-schema": JudgePrompt(BASE.system, BASE.user, schema=SCHEMA),
    "unicode-and-quotes": JudgePrompt('Judge "fairly" \\ strictly.\n\t', 'Ünïcødé 🚀 "x"\n'),
}


def make(model: str, transport: str, backend_class: type = LiteLLMBackend,
         **config) -> LiteLLMBackend:
    cfg = JudgeConfig(litellm_transport=transport, deadline_s=60.0, backoff_s=0.0,
                      **{"timeout_s": GENEROUS, "max_attempts": 1, **config})
    return backend_class(BackendSpec.litellm(model), cfg)


def lean_used(record) -> bool:
    return "aiohttp" in record.headers.get("user-agent", "")


MEANINGFUL_HEADERS = ("authorization", "x-api-key", "anthropic-version", "anthropic-beta",
                      "content-type", "openai-organization", "openai-project")


def wire(record) -> tuple:
    headers = {k: v for k, v in record.headers.items() if k in MEANINGFUL_HEADERS}
    return record.path, record.body, headers


async def _both(model, shape, behaviour, backend_class: type = LiteLLMBackend, **config):
    """(litellm's, lean's) outcome and wire record, for one behaviour each."""
    out = []
    for transport in ("litellm", "lean"):
        backend = make(model, transport, backend_class, **config)
        await backend.prepare()
        before = len(server_ref.requests)
        server_ref.script(behaviour)
        try:
            result = await backend.complete(shape, timeout=config.get("timeout_s", GENEROUS))
        except Exception as exc:  # compared below
            result = exc
        finally:
            await backend.aclose()
        out.append((result, server_ref.requests[before:]))
    return out


server_ref: FakeLLMServer


@pytest.fixture(autouse=True)
def _server_ref(server):
    global server_ref  # noqa: PLW0603 - the helpers above read the module's server
    server_ref = server


# -- the same request on the wire ------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("model", MODELS)
def test_same_body_and_auth_on_the_wire(model, shape):
    (old, [old_rec]), (new, [new_rec]) = asyncio.run(_both(model, SHAPES[shape], Behaviour()))
    assert not isinstance(new, Exception), new
    assert not isinstance(old, Exception), old
    assert wire(new_rec) == wire(old_rec)
    lean_expected = not (model.startswith("anthropic") and shape == "json-schema")
    assert lean_used(new_rec) is lean_expected and not lean_used(old_rec)


# The OpenAI SDK, not LiteLLM, turns these into headers: LiteLLM resolves the organization
# (its global, OPENAI_ORGANIZATION), the SDK falls back to OPENAI_ORG_ID and reads
# OPENAI_PROJECT_ID.
ORG_CASES = [  # id, environment, litellm.organization, headers LiteLLM's path sends
    ("litellm-env", {"OPENAI_ORGANIZATION": "org-litellm"}, None,
     {"openai-organization": "org-litellm"}),
    ("litellm-global", {}, "org-global", {"openai-organization": "org-global"}),
    ("sdk-env", {"OPENAI_ORG_ID": "org-sdk", "OPENAI_PROJECT_ID": "proj-sdk"}, None,
     {"openai-organization": "org-sdk", "openai-project": "proj-sdk"}),
    ("litellm-before-sdk", {"OPENAI_ORGANIZATION": "org-litellm", "OPENAI_ORG_ID": "org-sdk"},
     None, {"openai-organization": "org-litellm"}),
]


@pytest.mark.parametrize(("env", "organization", "expected"), [c[1:] for c in ORG_CASES],
                         ids=[c[0] for c in ORG_CASES])
@pytest.mark.parametrize("model", [OPENAI, REASONING])
def test_same_organization_and_project_headers(model, env, organization, expected,
                                               monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(load_litellm(), "organization", organization)
    # LiteLLM caches its SDK client per key, and the client reads OPENAI_ORG_ID and
    # OPENAI_PROJECT_ID once: a key of this case's own gets a client of its own.
    monkeypatch.setenv("OPENAI_API_KEY", f"sk-test-{model}-{'-'.join(sorted(env))}-{organization}")
    (old, [old_rec]), (new, [new_rec]) = asyncio.run(_both(model, BASE, Behaviour()))
    assert not isinstance(new, Exception), new
    assert not isinstance(old, Exception), old
    assert lean_used(new_rec) and not lean_used(old_rec)
    sent = {k: v for k, v in old_rec.headers.items() if k.startswith("openai-")}
    assert sent == expected
    assert wire(new_rec) == wire(old_rec)


# Headers set in LiteLLM (its global ``litellm.headers``, a call's ``headers`` or
# ``extra_headers``) and the OpenAI SDK's other request options reach LiteLLM's capture
# inside the arguments of the SDK's create(): the SDK, not LiteLLM, turns them into headers,
# top-level body keys or a query string.
class _Extra(LiteLLMBackend):
    extra: ClassVar[dict] = {}

    def request_kwargs(self, prompt, timeout):
        return {**super().request_kwargs(prompt, timeout), **self.extra}


EXTRA_CASES = [  # id, extra kwargs of the call, litellm.headers, header LiteLLM's path sends
    ("litellm-headers", {}, {"X-Tenant": "global"}, "global"),
    ("extra-headers", {"extra_headers": {"X-Tenant": "call"}}, None, "call"),
    ("headers", {"headers": {"X-Tenant": "headers"}}, None, "headers"),
    ("extra-headers-over-global", {"extra_headers": {"X-Tenant": "call"}},
     {"X-Tenant": "global"}, "call"),
    ("extra-headers-over-auth", {"extra_headers": {"authorization": "Bearer other"}}, None,
     None),
    ("extra-body", {"extra_body": {"top_k": 5}}, None, None),
    ("extra-query", {"extra_query": {"api-version": "1"}}, None, None),
]


@pytest.mark.parametrize(("extra", "global_headers", "tenant"), [c[1:] for c in EXTRA_CASES],
                         ids=[c[0] for c in EXTRA_CASES])
@pytest.mark.parametrize("model", [OPENAI, REASONING, VLLM, ANTHROPIC])
def test_same_extra_headers_body_and_query(model, extra, global_headers, tenant, monkeypatch):
    monkeypatch.setattr(load_litellm(), "headers", global_headers)
    monkeypatch.setattr(_Extra, "extra", extra)

    (old, [old_rec]), (new, [new_rec]) = asyncio.run(_both(model, BASE, Behaviour(), _Extra))
    assert not isinstance(old, Exception), old
    assert not isinstance(new, Exception), new
    # vLLM's LiteLLM path sends a lower-case authorization beside its own Authorization
    # (both values, joined): that shape keeps LiteLLM's path.
    twice = model == VLLM and "authorization" in extra.get("extra_headers", {})
    assert lean_used(new_rec) is not twice and not lean_used(old_rec)
    meaningful = (*MEANINGFUL_HEADERS, "x-tenant")
    assert {k: v for k, v in new_rec.headers.items() if k in meaningful} == {
        k: v for k, v in old_rec.headers.items() if k in meaningful}
    assert (new_rec.path, new_rec.query, new_rec.body) == (
        old_rec.path, old_rec.query, old_rec.body)
    if tenant is not None and model.startswith("openai"):  # LiteLLM's path really sends it
        assert old_rec.headers.get("x-tenant") == tenant
    assert "extra_headers" not in new_rec.body


def test_sdk_options_sent_outside_the_body_keep_litellms_path():
    """An option the OpenAI SDK would put in the URL (extra_query) or on the client
    (timeout), if LiteLLM ever hands one over, is not sent as a body key."""
    captured = {"openai_sdk": True, "api_base": "http://x/v1", "complete_input_dict": {
        "model": "m", "messages": [{"role": "user", "content": "\x00ray-judge-0\x00"}]}}
    where, auth = ("openai", "m", "openai"), {"Authorization": "Bearer k"}
    assert route_from_capture(where, captured, auth, 1) is not None
    for option in ("extra_query", "timeout"):
        body = {**captured["complete_input_dict"], option: {"api-version": "1"}}
        assert route_from_capture(where, {**captured, "complete_input_dict": body}, auth, 1) is None


# -- the same answer back: text, model, tokens, cost -------------------------------------

def _openai_body(model: str, text: str, **usage) -> str:
    import json

    return json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant",
                                                            "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1234, "completion_tokens": 56,
                                 "total_tokens": 1290, **usage}})


def _anthropic_body(model: str, text: str | None, **usage) -> str:
    import json

    content = [] if text is None else [{"type": "text", "text": text}]
    return json.dumps({"id": "x", "type": "message", "role": "assistant", "model": model,
                       "content": content, "stop_reason": "end_turn",
                       "usage": {"input_tokens": 1234, "output_tokens": 56, **usage}})


ANSWERS = [  # id, model, behaviour
    *((f"default-{m}", m, Behaviour()) for m in MODELS),
    ("served-dated-model", OPENAI, Behaviour(body=_openai_body("gpt-4o-mini-2024-07-18", "x"))),
    ("served-other-priced-model", OPENAI, Behaviour(body=_openai_body("gpt-4o", "x"))),
    ("think-block", VLLM, Behaviour(body=_openai_body("Qwen3", "<think>hmm</think>SCORE: 8"))),
    ("null-content", OPENAI, Behaviour(body=_openai_body("gpt-4o-mini", None))),
    ("reasoning-field", VLLM, Behaviour(body=_openai_body("Qwen3", "SCORE: 3").replace(
        '"role": "assistant"', '"role": "assistant", "reasoning_content": "because"'))),
    ("anthropic-served-dated", ANTHROPIC,
     Behaviour(body=_anthropic_body("claude-sonnet-4-5-20250929", "SCORE: 7"))),
    ("anthropic-served-unpriced", ANTHROPIC,
     Behaviour(body=_anthropic_body("claude-3-opus-20240229", "SCORE: 7"))),
    ("anthropic-empty-content", ANTHROPIC, Behaviour(body=_anthropic_body("m", None))),
    ("anthropic-cache-tokens", ANTHROPIC, Behaviour(body=_anthropic_body(
        "claude-sonnet-4-5", "SCORE: 7", cache_read_input_tokens=100,
        cache_creation_input_tokens=10))),
    ("long-prompt-tier", ANTHROPIC, Behaviour(body=_anthropic_body(
        "claude-sonnet-4-5", "SCORE: 7").replace("1234", "250000"))),
]


@pytest.mark.parametrize(("model", "behaviour"), [a[1:] for a in ANSWERS],
                         ids=[a[0] for a in ANSWERS])
def test_same_completion_tokens_and_cost(model, behaviour):
    (old, _), (new, [rec]) = asyncio.run(_both(model, BASE, behaviour))
    assert not isinstance(old, Exception), old
    assert lean_used(rec)
    assert (new.text, new.model, new.input_tokens, new.output_tokens, new.structured) == (
        old.text, old.model, old.input_tokens, old.output_tokens, old.structured)
    if old.cost_usd is None:
        assert new.cost_usd is None
    else:
        assert new.cost_usd == pytest.approx(old.cost_usd, rel=1e-9, abs=1e-15)


# -- the same failure: Verdict status, retry_after, error text ----------------------------

QUOTA = ('{"error":{"message":"You exceeded your current quota, please check your plan and '
         'billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}')


def _http_date(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


FAILURES = [  # id, behaviour
    ("401", Behaviour.error(401, "invalid x-api-key")),
    ("403", Behaviour.error(403, "not allowed")),
    ("404", Behaviour.error(404, "model not found")),
    ("408", Behaviour.error(408, "request timeout")),
    ("422", Behaviour.error(422, "unprocessable")),
    ("429", Behaviour.error(429)),
    ("429-retry-after-seconds", Behaviour.error(429, retry_after=7)),
    ("429-retry-after-ms", Behaviour(status=429, text="slow", headers={"retry-after-ms": "1500"})),
    ("429-retry-after-http-date", None),  # built per run: the date must be in the future
    ("429-insufficient-quota", Behaviour(status=429, body=QUOTA)),
    ("429-unified-rejected", Behaviour.usage_limit(1_900_000_000)),
    ("400", Behaviour.error(400, "bad request")),
    ("500", Behaviour.error(500)),
    ("502", Behaviour.error(502)),
    ("502-html", Behaviour(status=502, body="<html>bad gateway</html>",
                           headers={"content-type": "text/html"})),
    ("503", Behaviour.error(503)),
    ("504", Behaviour.error(504)),
    ("529", Behaviour.error(529, "Overloaded")),
    ("dropped-connection", Behaviour.drop()),
    ("reset-mid-body", Behaviour.cut()),
    ("malformed-json", Behaviour.malformed()),
    ("empty-body", Behaviour(body="")),
    ("slow-headers", Behaviour.hang()),
    ("slow-body", Behaviour.stall()),
]
SLOW = {"slow-headers", "slow-body"}


def normalise(text: str | None) -> str | None:
    # What legitimately differs between two calls: the fake's request ids, object
    # addresses in a repr, the id and time LiteLLM gives the response object it quotes.
    if text is None:
        return None
    text = re.sub(r"chatcmpl-[0-9a-f-]+", "chatcmpl-?", re.sub(r"created=\d+", "created=?", text))
    return re.sub(r"0x[0-9a-f]+", "0x?", re.sub(r"req_fake_\d+", "req_fake_?", text))


async def _verdicts(model, behaviour, timeout_s):
    out = []
    for transport in ("litellm", "lean"):
        backend = make(model, transport, timeout_s=timeout_s)
        await backend.prepare()
        before = len(server_ref.requests)
        server_ref.script(behaviour)
        try:
            verdict = await JudgeRunner(backend).judge(JudgeRequest(prompt="2+2?", response="4"))
        finally:
            await backend.aclose()
        out.append((verdict, server_ref.requests[before:]))
    return out


@pytest.mark.parametrize("failure", [f[0] for f in FAILURES])
@pytest.mark.parametrize("model", [OPENAI, VLLM, ANTHROPIC])
def test_same_verdict_for_every_failure(model, failure):
    behaviour = dict(FAILURES)[failure] or Behaviour.error(429, retry_after=_http_date(30))
    timeout_s = 1.0 if failure in SLOW else GENEROUS
    (old, old_recs), (new, new_recs) = asyncio.run(_verdicts(model, behaviour, timeout_s))
    assert lean_used(new_recs[-1]) and not lean_used(old_recs[-1])
    assert new.status == old.status and new.score is None and old.score is None
    assert normalise(new.error) == normalise(old.error)
    assert new.resets_at == old.resets_at
    if failure.endswith("http-date"):
        assert new.retry_after == pytest.approx(old.retry_after, abs=3.0)
    else:
        assert new.retry_after == old.retry_after
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HOSTED_VLLM_API_KEY"):
        assert KEYS[key] not in (new.error or "")


def _without(change: dict) -> Behaviour:
    """A good answer with ``change`` made to its fields (``...``: the field is left out)."""
    import json

    body = {**json.loads(_openai_body("gpt-4o-mini", "SCORE: 7")), **change}
    return Behaviour(body=json.dumps({k: v for k, v in body.items() if v is not ...}))


UNREADABLE = [  # id, a 200 whose JSON has no readable answer, what the error must name
    ("no-choices", _without({"choices": ...}), "choices"),
    ("choices-null", _without({"choices": None}), "choices"),
    ("choices-not-a-list", _without({"choices": {"0": {}}}), "choices"),
    ("empty-choices", _without({"choices": []}), None),  # LiteLLM: an answer without text
    ("choice-without-message", _without({"choices": [{"index": 0}]}), "message"),
    ("message-null", _without({"choices": [{"index": 0, "message": None}]}), "message"),
    ("error-instead", Behaviour(body='{"error": {"message": "upstream fell over", '
                                     '"code": 502}}'), "upstream fell over"),
]


@pytest.mark.parametrize(("behaviour", "named"), [u[1:] for u in UNREADABLE],
                         ids=[u[0] for u in UNREADABLE])
@pytest.mark.parametrize("model", [OPENAI, VLLM])
def test_same_verdict_for_a_200_without_an_answer(model, behaviour, named):
    (old, old_recs), (new, new_recs) = asyncio.run(_verdicts(model, behaviour, GENEROUS))
    assert lean_used(new_recs[-1]) and not lean_used(old_recs[-1])
    assert new.status == old.status and new.score is None and old.score is None
    assert normalise(new.error) == normalise(old.error)
    if named is not None:
        assert named in new.error


def _messages_without(change: dict) -> Behaviour:
    """A good Messages answer with ``change`` made to its fields (``...``: left out)."""
    import json

    body = {**json.loads(_anthropic_body("claude-sonnet-4-5", "SCORE: 7")), **change}
    return Behaviour(body=json.dumps({k: v for k, v in body.items() if v is not ...}))


UNREADABLE_MESSAGES = [  # id, a 200 whose JSON LiteLLM's Anthropic provider cannot read
    ("no-content", _messages_without({"content": ...})),
    ("content-null", _messages_without({"content": None})),
    ("content-not-a-list", _messages_without({"content": {"type": "text"}})),
    ("block-without-type", _messages_without({"content": [{"text": "SCORE: 7"}]})),
    ("text-block-without-text", _messages_without({"content": [{"type": "text"}]})),
    ("no-stop-reason", _messages_without({"stop_reason": ...})),
    ("no-usage", _messages_without({"usage": ...})),
    ("no-model", _messages_without({"model": ...})),
    ("error-instead", Behaviour(body='{"type": "error", "error": {"type": "overloaded_error",'
                                     ' "message": "upstream fell over"}}')),
    ("not-an-object", Behaviour(body="[1, 2]")),
]


@pytest.mark.parametrize("behaviour", [u[1] for u in UNREADABLE_MESSAGES],
                         ids=[u[0] for u in UNREADABLE_MESSAGES])
def test_same_verdict_for_a_messages_200_without_an_answer(behaviour):
    """Not an empty judgement (a parse_error the judge would re-ask about): LiteLLM's
    error for the answer. Its text agrees up to the traceback LiteLLM appends, which
    names where each path raised."""
    (old, _), (new, new_recs) = asyncio.run(_verdicts(ANTHROPIC, behaviour, GENEROUS))
    assert lean_used(new_recs[-1])
    assert new.status == old.status == "backend_error" and new.score is None
    first = [normalise(v.error).split("\nTraceback")[0] for v in (old, new)]
    assert first[1] == first[0]


@pytest.mark.parametrize("model", [OPENAI, VLLM, ANTHROPIC])
def test_same_verdict_when_the_connection_is_refused(model, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("ANTHROPIC_API_BASE", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", f"http://127.0.0.1:{port}/v1")

    async def both():
        verdicts = []
        for transport in ("litellm", "lean"):
            backend = make(model, transport)
            verdicts.append(await JudgeRunner(backend).judge(JudgeRequest("2+2?", "4")))
            await backend.aclose()
        return verdicts

    old, new = asyncio.run(both())
    assert (new.status, new.retry_after) == (old.status, old.retry_after)
    assert normalise(new.error) == normalise(old.error)


# -- what takes the lean path, and what keeps LiteLLM's ------------------------------------

def test_setting_litellm_restores_the_old_path(server):
    backend = make(OPENAI, "litellm")
    asyncio.run(backend.complete(BASE, timeout=GENEROUS))
    assert not lean_used(server.requests[-1])


@pytest.mark.parametrize(("model", "lean"), [
    (OPENAI, True), (VLLM, True), (ANTHROPIC, True),
    ("gemini/gemini-2.0-flash", False),  # another wire format: LiteLLM's path
    ("no-such-provider/foo", False),
])
def test_which_providers_are_planned(model, lean):
    litellm = load_litellm()
    kwargs = make(model, "lean").request_kwargs(BASE, 10.0)
    route = plan_route(litellm, kwargs)
    assert (route is not None) is lean
    if route is not None:
        assert isinstance(route, Route) and "PLANTED" not in repr(route)


def test_missing_api_key_keeps_litellms_error(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    old = asyncio.run(JudgeRunner(make(OPENAI, "litellm")).judge(JudgeRequest("q", "a")))
    new = asyncio.run(JudgeRunner(make(OPENAI, "lean")).judge(JudgeRequest("q", "a")))
    assert new.status == old.status == "auth_error" and new.error == old.error


def test_concurrent_calls_share_one_session_and_plan_once(server):
    backend = make(OPENAI, "lean", max_in_flight_litellm=8)

    async def many():
        await asyncio.gather(*(backend.complete(BASE, timeout=GENEROUS) for _ in range(40)))
        http = backend._http
        await backend.aclose()
        return http

    http = asyncio.run(many())
    assert http is not None and http.limit == 8
    assert len(backend._routes) == 1
    assert len(server.requests) == 40 and all(lean_used(r) for r in server.requests)


@pytest.mark.parametrize(("env", "url", "expected"), [
    ({}, "https://api.openai.com/v1/chat/completions", None),
    ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.openai.com/v1/x", "http://proxy:3128"),
    ({"https_proxy": "http://proxy:3128"}, "http://127.0.0.1:8000/v1/x", None),
    ({"HTTP_PROXY": "http://proxy:3128"}, "http://vllm.internal:8000/v1/x", "http://proxy:3128"),
    ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "vllm.internal"},
     "http://vllm.internal:8000/v1/x", None),
    ({"ALL_PROXY": "http://proxy:3128"}, "https://api.anthropic.com/v1/messages",
     "http://proxy:3128"),
])
def test_proxy_from_the_environment(monkeypatch, env, url, expected):
    """Proxies are read once per URL (aiohttp's trust_env costs two thread hops per call)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected
