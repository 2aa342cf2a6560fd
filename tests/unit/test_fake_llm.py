"""The fake LLM provider itself, in this process: both wire formats, every Behaviour.

Its process mode (a server in a child process) is tests/system/test_fake_llm_process.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import time

import aiohttp
import pytest

import ray_judge.testing as testing
from ray_judge.testing import (
    DEFAULT_TEXT,
    Behaviour,
    FakeLLMProcess,
    FakeLLMServer,
    RecordedRequest,
)

ANTHROPIC = "/v1/messages"
OPENAI = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Grade this answer please."}]


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


def call(server_or_url, path, body=None, *, method="POST", timeout=5.0, raw=None):
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body))
        conn.request(method, path, body=payload, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def sse_events(data: bytes) -> list[tuple[str | None, str]]:
    events = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        event, lines = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                lines.append(line[len("data: "):])
        events.append((event, "\n".join(lines)))
    return events


# -- the two wire formats ------------------------------------------------------------------

def test_anthropic_message(server):
    status, headers, data = call(server, ANTHROPIC + "?beta=true",
                                 {"model": "claude-x", "max_tokens": 10, "messages": MESSAGES,
                                  "system": "You are a judge."})
    assert status == 200 and headers["content-type"].startswith("application/json")
    body = json.loads(data)
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-x" and body["id"].startswith("msg_")
    assert body["content"] == [{"type": "text", "text": DEFAULT_TEXT}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] == (len("You are a judge.") + len(MESSAGES[0]["content"])
                                             + len("user")) // 4
    assert body["usage"]["output_tokens"] == len(DEFAULT_TEXT) // 4
    rec = server.requests[-1]
    assert (rec.method, rec.path, rec.query) == ("POST", ANTHROPIC, {"beta": "true"})
    assert rec.body["model"] == "claude-x" and server.model_calls == 1


def test_anthropic_stream(server):
    text = "A long enough justification that it is split into several deltas.\nSCORE: 9"
    server.script(Behaviour.ok(text))
    status, headers, data = call(server, ANTHROPIC, {"model": "m", "stream": True,
                                                     "messages": MESSAGES})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(data)
    names = [e for e, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(d) for _, d in events]
    assert all(p["type"] == e for (e, _), p in zip(events, payloads, strict=True))
    deltas = [p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta"]
    assert len(deltas) > 1 and "".join(deltas) == text
    assert payloads[0]["message"]["model"] == "m"
    final = next(p for p in payloads if p["type"] == "message_delta")
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["output_tokens"] == len(text) // 4


STRUCTURED_TOOLS = [{"name": "StructuredOutput", "description": "d",
                     "input_schema": {"type": "object"}}]


def test_anthropic_structured_output_calls_the_offered_tool(server):
    server.script(Behaviour.structured_output({"score": 0.5}, text="Thinking it over."))
    status, _, data = call(server, ANTHROPIC, {"model": "m", "messages": MESSAGES,
                                               "tools": STRUCTURED_TOOLS})
    body = json.loads(data)
    assert status == 200 and body["stop_reason"] == "tool_use"
    assert body["content"][0] == {"type": "text", "text": "Thinking it over."}
    tool = body["content"][1]
    assert (tool["type"], tool["name"], tool["input"]) == (
        "tool_use", "StructuredOutput", {"score": 0.5})
    assert tool["id"].startswith("toolu_")


def test_anthropic_structured_output_stream_builds_the_input_from_deltas(server):
    value = {"score": 0.25, "reason": "long enough to need several input_json deltas"}
    server.script(Behaviour.structured_output(value))
    _, _, data = call(server, ANTHROPIC, {"model": "m", "stream": True, "messages": MESSAGES,
                                          "tools": STRUCTURED_TOOLS})
    payloads = [json.loads(d) for _, d in sse_events(data)]
    starts = [p["content_block"] for p in payloads if p["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["tool_use"]  # no empty text block first
    assert starts[0]["name"] == "StructuredOutput" and starts[0]["input"] == {}
    parts = [p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta"]
    assert len(parts) > 1 and json.loads("".join(parts)) == value
    final = next(p for p in payloads if p["type"] == "message_delta")
    assert final["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("path", [ANTHROPIC, OPENAI])
def test_structured_output_without_a_tool_is_json_text(server, path):
    server.script(Behaviour.structured_output({"score": 3}))
    _, _, data = call(server, path, {"model": "m", "messages": MESSAGES})
    body = json.loads(data)
    text = (body["content"][0]["text"] if path == ANTHROPIC
            else body["choices"][0]["message"]["content"])
    assert json.loads(text) == {"score": 3}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_openai_completion(server, path):
    status, _, data = call(server, path, {"model": "gpt-x", "messages": MESSAGES})
    body = json.loads(data)
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "gpt-x"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": DEFAULT_TEXT}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_stream(server, include_usage):
    body = {"model": "gpt-x", "stream": True, "messages": MESSAGES}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    status, headers, data = call(server, OPENAI, body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    datas = [d for _, d in sse_events(data)]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == DEFAULT_TEXT
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert ("usage" in chunks[-1]) is include_usage


def test_count_tokens_and_warm_up_routes(server):
    status, _, data = call(server, "/v1/messages/count_tokens",
                           {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]})
    assert status == 200 and json.loads(data)["input_tokens"] == (400 + len("user")) // 4
    assert call(server, "/", method="HEAD")[0] == 200
    assert call(server, "/", method="GET")[0] == 200
    assert [r.method for r in server.requests] == ["POST", "HEAD", "GET"]
    assert server.model_calls == 0  # neither counts as a model call nor consumes the script


def test_unknown_route_is_404_json(server):
    status, _, data = call(server, "/v1/completions", {"model": "m"})
    assert status == 404 and "no route" in json.loads(data)["error"]["message"]


def test_request_body_that_is_not_json_is_400_and_recorded(server):
    status, _, data = call(server, OPENAI, raw="{not json")
    assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error"
    assert server.requests[-1].body is None and server.model_calls == 0


# -- behaviours ------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (429, "rate_limit_error"), (500, "api_error"),
    (502, "api_error"), (503, "api_error"), (529, "overloaded_error"),
])
def test_error_in_anthropic_format(server, status, kind):
    server.script(Behaviour.error(status, "it went wrong"))
    got, _, data = call(server, ANTHROPIC, {"model": "m", "stream": True, "messages": MESSAGES})
    body = json.loads(data)
    assert got == status and body["type"] == "error"
    assert body["error"] == {"type": kind, "message": "it went wrong"}


@pytest.mark.parametrize(("status", "kind", "code"), [
    (400, "invalid_request_error", None), (401, "invalid_request_error", "invalid_api_key"),
    (429, "rate_limit_exceeded", "rate_limit_exceeded"), (500, "server_error", None),
    (503, "server_error", None),
])
def test_error_in_openai_format(server, status, kind, code):
    server.script(Behaviour.error(status, "it went wrong"))
    got, _, data = call(server, OPENAI, {"model": "m", "messages": MESSAGES})
    assert got == status
    assert json.loads(data)["error"] == {"message": "it went wrong", "type": kind,
                                         "param": None, "code": code}


@pytest.mark.parametrize(("retry_after", "header"), [
    (2, "2"), (0.5, "0.5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")])
def test_retry_after_header(server, retry_after, header):
    server.script(Behaviour.error(429, retry_after=retry_after))
    assert call(server, OPENAI, {"model": "m"})[1]["retry-after"] == header


def test_usage_limit_headers(server):
    server.script(Behaviour.usage_limit(1_900_000_000))
    status, headers, data = call(server, ANTHROPIC, {"model": "m", "messages": MESSAGES})
    assert status == 429 and json.loads(data)["error"]["type"] == "rate_limit_error"
    assert headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert headers["anthropic-ratelimit-unified-reset"] == "1900000000"
    assert headers["anthropic-ratelimit-unified-representative-claim"] == "five_hour"
    assert headers["anthropic-ratelimit-unified-5h-status"] == "rejected"
    assert headers["anthropic-ratelimit-unified-5h-reset"] == "1900000000"
    assert headers["anthropic-ratelimit-unified-5h-utilization"] == "1.0"


def test_raw_body_and_headers_override(server):
    server.script(Behaviour(status=502, body="<html>bad gateway</html>",
                            headers={"Content-Type": "text/html", "x-extra": "1"}))
    status, headers, data = call(server, OPENAI, {"model": "m"})
    assert (status, data) == (502, b"<html>bad gateway</html>")
    assert headers["content-type"].startswith("text/html") and headers["x-extra"] == "1"


def test_hang_answers_nothing_and_ends_when_the_client_leaves(server):
    server.script(Behaviour.hang())
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        call(server, OPENAI, {"model": "m"}, timeout=0.5)
    assert time.monotonic() - start < 2
    deadline = time.monotonic() + 5
    while server._hangs and time.monotonic() < deadline:  # the handler is cancelled
        time.sleep(0.02)
    assert not server._hangs
    assert call(server, OPENAI, {"model": "m"})[0] == 200  # the next call is fine


def test_stop_ends_a_hanging_request_quickly():
    srv = FakeLLMServer().start()
    srv.script(Behaviour.hang())
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", OPENAI, body=json.dumps({"model": "m"}))
    deadline = time.monotonic() + 5
    while not srv._hangs and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 2
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        conn.getresponse()
    srv.stop()  # twice is fine


def test_drop_closes_the_connection_without_a_response(server):
    server.script(Behaviour.drop())
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        call(server, ANTHROPIC, {"model": "m", "messages": MESSAGES})
    assert call(server, ANTHROPIC, {"model": "m", "messages": MESSAGES})[0] == 200


@pytest.mark.parametrize("path", [ANTHROPIC, OPENAI])
def test_malformed_body(server, path):
    server.script(Behaviour.malformed())
    status, headers, data = call(server, path, {"model": "m", "messages": MESSAGES})
    assert status == 200 and headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(data)


@pytest.mark.parametrize("path", [ANTHROPIC, OPENAI])
def test_malformed_stream(server, path):
    server.script(Behaviour.malformed())
    status, _, data = call(server, path, {"model": "m", "stream": True, "messages": MESSAGES})
    assert status == 200
    datas = [d for _, d in sse_events(data)]
    assert "[DONE]" not in datas and '"type":"message_stop"' not in data.decode()
    with pytest.raises(ValueError):
        json.loads(datas[-1])


def test_delay_and_latency_add_up():
    with FakeLLMServer(latency_s=0.1) as srv:
        srv.script(Behaviour.ok(delay_s=0.2))
        start = time.monotonic()
        call(srv, OPENAI, {"model": "m"})
        assert 0.3 <= time.monotonic() - start < 1.5
        start = time.monotonic()
        call(srv, OPENAI, {"model": "m"})
        assert 0.1 <= time.monotonic() - start < 1.0


def test_script_is_fifo_then_default(server):
    server.script(Behaviour.error(500), Behaviour.ok("first"))
    server.script(Behaviour.ok("second"))
    server.default = Behaviour.ok("default")
    got = []
    for _ in range(5):
        status, _, data = call(server, OPENAI, {"model": "m"})
        got.append(status if status != 200
                   else json.loads(data)["choices"][0]["message"]["content"])
    assert got == [500, "first", "second", "default", "default"]
    assert server.model_calls == 5 and len(server.requests) == 5
    server.clear()
    assert server.requests == [] and server.model_calls == 5
    server.reset()
    assert server.model_calls == 0 and server.default == Behaviour()


def test_reply_hook_computes_the_default_answer():
    def reply(body):
        return f"echo {body['messages'][-1]['content']}\nSCORE: 3"

    with FakeLLMServer(reply=reply) as srv:
        srv.script(Behaviour.ok("scripted"), Behaviour.ok())
        texts = [json.loads(call(srv, OPENAI, {"model": "m", "messages": MESSAGES})[2])
                 ["choices"][0]["message"]["content"] for _ in range(3)]
        assert texts == ["scripted", f"echo {MESSAGES[0]['content']}\nSCORE: 3",
                         f"echo {MESSAGES[0]['content']}\nSCORE: 3"]
        srv.reply = lambda body: 1 / 0
        status, _, data = call(srv, ANTHROPIC, {"model": "m", "messages": MESSAGES})
        assert status == 500 and "ZeroDivisionError" in json.loads(data)["error"]["message"]


def test_recorded_request_fields(server):
    before = time.time()
    call(server, ANTHROPIC + "?beta=true", {"model": "m", "messages": MESSAGES,
                                            "tools": []})
    rec = server.requests[-1]
    assert isinstance(rec, RecordedRequest)
    assert rec.headers["content-type"] == "application/json"
    assert rec.body["tools"] == [] and before <= rec.at <= time.time()
    assert RecordedRequest.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec


def test_max_recorded_keeps_the_newest():
    with FakeLLMServer(max_recorded=3) as srv:
        for i in range(5):
            call(srv, OPENAI, {"model": f"m{i}"})
        assert [r.body["model"] for r in srv.requests] == ["m2", "m3", "m4"]
        assert srv.model_calls == 5


def test_many_concurrent_connections_with_latency():
    async def load(url, n, concurrency):
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one(i):
                async with session.post(f"{url}{OPENAI}", json={"model": f"m{i}"}) as resp:
                    return resp.status
            return await asyncio.gather(*(one(i) for i in range(n)))

    with FakeLLMServer(latency_s=0.05) as srv:
        start = time.monotonic()
        statuses = asyncio.run(load(srv.url, 1000, 500))
        elapsed = time.monotonic() - start
        assert statuses == [200] * 1000 and srv.model_calls == 1000
        assert elapsed < 15, elapsed


# -- Behaviour values ------------------------------------------------------------------------

def test_behaviour_constructors_and_fields():
    assert Behaviour() == Behaviour.ok()
    assert not (Behaviour().hang or Behaviour().drop or Behaviour().malformed)
    assert Behaviour.hang().hang and Behaviour.drop().drop and Behaviour.malformed().malformed
    err = Behaviour.error(503, "down", retry_after=1.5)
    assert (err.status, err.text, err.headers) == (503, "down", {"retry-after": "1.5"})
    headers = {"a": "b"}
    b = Behaviour(headers=headers)
    headers["a"] = "changed"
    assert b.headers == {"a": "b"}
    assert len({Behaviour.error(429, retry_after=1), Behaviour.error(429, retry_after=1)}) == 1


@pytest.mark.parametrize("behaviour", [
    Behaviour(), Behaviour.error(429, retry_after=3), Behaviour.usage_limit(123), Behaviour.hang(),
    Behaviour.drop(), Behaviour.malformed(), Behaviour(body="x", status=201, delay_s=0.5),
    Behaviour.structured_output({"score": 1, "why": ["a", "b"]}, text="t"),
])
def test_behaviour_dict_round_trip(behaviour):
    assert Behaviour.from_dict(json.loads(json.dumps(behaviour.to_dict()))) == behaviour


@pytest.mark.parametrize(("data", "error", "match"), [
    ({"stauts": 200}, ValueError, "unknown behaviour field"),
    ({"status": 700}, ValueError, "status"),
    ({"delay_s": -1}, ValueError, "delay_s"),
    ({"text": 3}, TypeError, "text"),
    ({"headers": {"a": 1}}, TypeError, "headers"),
    ({"structured": {"a": {1, 2}}}, TypeError, "structured must be JSON-ready"),
    ([], TypeError, "JSON object"),
])
def test_behaviour_validation(data, error, match):
    with pytest.raises(error, match=match):
        Behaviour.from_dict(data)


def test_script_and_default_type_checks(server):
    with pytest.raises(TypeError):
        server.script({"status": 500})
    with pytest.raises(TypeError):
        server.default = "ok"


def test_lifecycle_errors():
    srv = FakeLLMServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.url
    with srv:
        with pytest.raises(RuntimeError, match="already started"):
            srv.start()
        taken = srv.port
        with pytest.raises(RuntimeError, match="failed to start"):
            FakeLLMServer(port=taken).start()


def test_package_exports_resolve():
    assert len(set(testing.__all__)) == len(testing.__all__)
    assert dir(testing) == sorted(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    with pytest.raises(AttributeError):
        _ = testing.Nope
    from ray_judge.testing.fake_llm import FakeLLMProcess as again

    assert again is FakeLLMProcess
