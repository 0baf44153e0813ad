"""The litellm provider, end to end: the real router over real HTTP, the openai SDK as the agent, and the
fake Anthropic Messages upstream behind litellm's Anthropic adapter."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import openai
import pytest

from providers.litellm_bridge import start_loading
from providers.litellm_errors import to_provider_error, upstream_text
from providers.litellm_shapes import ChunkShaper, openai_completion
from router.errors import UpstreamServerError
from tests.configs import with_test_identity
from tests.fakes.behaviours import (
    CONTEXT_EXCEEDED_ANTHROPIC,
    Error,
    Garbage,
    Hang,
    InvalidJSON,
    ResetMidStream,
    Text,
    ToolCalls,
    anthropic_error,
)
from tests.harness import free_port
from tests.spec import assert_matches

ROOT = Path(__file__).resolve().parents[1]
TEST_KEY_HASH = hashlib.sha256(b"test-key").hexdigest()
UPSTREAM_MODEL = "claude-sonnet-4-5"
BACKUP_MODEL = "claude-haiku-4-5"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string"}, "units": {"type": "array"}}}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time",
                                      "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]
WEATHER_ARGS = json.dumps({"city": "Paris", "units": ["celsius", "kelvin"], "note": "quote \" and {brace}"})
TIME_ARGS = json.dumps({"tz": "Europe/Paris"})


def anthropic_config(base_url: str, *, timeout: float = 10) -> str:
    """The brief's example config, plus a backup deployment and an agent (key "test-key") allowed every tool."""
    return f"""
providers:
  anthropic: {{type: litellm, base_url: "{base_url}", api_key: test, timeout: {timeout}}}
deployments:
  claude: {{provider: anthropic, model: anthropic/{UPSTREAM_MODEL}}}
  claude-backup: {{provider: anthropic, model: anthropic/{BACKUP_MODEL}}}
models:
  claude: [claude]
  claude-chain: [claude, claude-backup]
roles:
  tester: {{models: ["*"], tools: {{allow: ["*"]}}}}
agents:
  test-agent: {{role: tester, keys: [{{hash: "sha256:{TEST_KEY_HASH}"}}]}}
"""


@pytest.fixture
def router(upstream, start_router):
    return start_router(anthropic_config(upstream.url))


# -- answers --------------------------------------------------------------------------------------------
def test_non_streaming_text_is_an_openai_completion(router, upstream):
    upstream.queue(UPSTREAM_MODEL, Text("Sunny, 21 degrees.", usage=(31, 6)))
    raw = router.client().chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}, *USER],
        temperature=0.2, max_tokens=64, stop=["END"], user="agent-7")
    completion = raw.parse()
    assert_matches("CreateChatCompletionResponse", json.loads(raw.http_response.content))
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Sunny, 21 degrees."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (31, 6)
    assert completion.usage.total_tokens == 37
    assert raw.headers["x-agent-router-provider"] == "anthropic"

    [sent] = upstream.served(UPSTREAM_MODEL)
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "test"
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert headers["x-request-id"] == raw.headers["x-request-id"]
    assert sent.body["system"][0]["text"] == "Be brief."
    assert (sent.body["temperature"], sent.body["max_tokens"], sent.body["stop_sequences"]) == (0.2, 64, ["END"])
    assert sent.body["metadata"] == {"user_id": "agent-7"}


def test_client_cannot_steer_litellm_through_body_fields(router, upstream):
    """api_base / api_key / mock_response in the body would let a caller redirect or fake the upstream."""
    completion = router.client().chat.completions.create(
        model="claude", messages=USER,
        extra_body={"api_base": "http://127.0.0.1:9", "api_key": "stolen", "mock_response": "faked"})
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    [sent] = upstream.served(UPSTREAM_MODEL)
    assert sent.headers["x-api-key"] == "test"
    assert not {"api_base", "api_key", "mock_response"} & set(sent.body)


def test_non_streaming_parallel_tool_calls_keep_their_arguments(router, upstream):
    upstream.queue(UPSTREAM_MODEL, ToolCalls([("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)],
                                             content="Checking.", usage=(40, 12)))
    raw = router.client().chat.completions.with_raw_response.create(model="claude", messages=USER, tools=TOOLS,
                                                                    tool_choice="auto")
    completion = raw.parse()
    assert_matches("CreateChatCompletionResponse", json.loads(raw.http_response.content))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.id for c in calls] == ["toolu_0_get_weather", "toolu_1_get_time"]
    assert [c.type for c in calls] == ["function", "function"]
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == json.loads(WEATHER_ARGS)
    assert json.loads(calls[1].function.arguments) == json.loads(TIME_ARGS)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (40, 12)
    [sent] = upstream.served(UPSTREAM_MODEL)
    assert [t["name"] for t in sent.body["tools"]] == ["get_weather", "get_time"]
    assert sent.body["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}


def test_streaming_text_with_usage_at_the_end(router, upstream):
    text = "Sunny with a light breeze, 21 degrees."
    upstream.queue(UPSTREAM_MODEL, Text(text, usage=(25, 9)))
    chunks = list(router.client().chat.completions.create(model="claude", messages=USER, stream=True,
                                                          stream_options={"include_usage": True}))
    for chunk in chunks:
        assert_matches("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3, "text must arrive in pieces"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (25, 9, 34)
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_usage_request_shows_no_usage_chunk(router, upstream):
    upstream.queue(UPSTREAM_MODEL, Text("short"))
    chunks = list(router.client().chat.completions.create(model="claude", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "short"
    assert all(c.usage is None and c.choices for c in chunks)


def test_streamed_tool_calls_have_openai_delta_shape_and_reassemble(router, upstream):
    upstream.queue(UPSTREAM_MODEL, ToolCalls([("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)],
                                             content="Let me check.", fragment=3))
    with router.http() as http, http.stream("POST", "/v1/chat/completions",
                                            headers={"authorization": "Bearer test-key"},
                                            json={"model": "claude", "messages": USER, "tools": TOOLS,
                                                  "stream": True}) as resp:
        assert resp.status_code == 200
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = []
    for event in events[:-1]:
        chunk = json.loads(event)
        assert_matches("CreateChatCompletionStreamResponse", chunk)
        deltas += [d for c in chunk["choices"] for d in c["delta"].get("tool_calls") or []]
    firsts = [d for d in deltas if "id" in d]
    assert [(d["index"], d["id"], d["type"], d["function"]["name"]) for d in firsts] == [
        (0, "toolu_0_get_weather", "function", "get_weather"), (1, "toolu_1_get_time", "function", "get_time")]
    pieces = [d for d in deltas if "id" not in d]
    assert pieces, "arguments must arrive in pieces after the first delta"
    assert all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in pieces)
    arguments = {0: "", 1: ""}
    for d in deltas:
        arguments[d["index"]] += d["function"].get("arguments") or ""
    assert json.loads(arguments[0]) == json.loads(WEATHER_ARGS)
    assert json.loads(arguments[1]) == json.loads(TIME_ARGS)


def test_sdk_reassembles_fragmented_tool_call_stream(router, upstream):
    upstream.queue(UPSTREAM_MODEL, ToolCalls([("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)], fragment=2))
    with router.client().chat.completions.stream(model="claude", messages=USER, tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name) for c in calls] == [("toolu_0_get_weather", "get_weather"),
                                                         ("toolu_1_get_time", "get_time")]
    assert json.loads(calls[0].function.arguments) == json.loads(WEATHER_ARGS)
    assert json.loads(calls[1].function.arguments) == json.loads(TIME_ARGS)


# -- errors ---------------------------------------------------------------------------------------------
def test_rate_limited_everywhere_gives_429_with_retry_after(router, upstream):
    limited = Error(429, anthropic_error("rate limited", "rate_limit_error"), {"retry-after": "7"})
    upstream.always(UPSTREAM_MODEL, limited)
    upstream.always(BACKUP_MODEL, limited)
    with router.http() as http:
        resp = http.post("/v1/chat/completions", headers={"authorization": "Bearer test-key"},
                         json={"model": "claude-chain", "messages": USER})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "7"
    error = resp.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "upstream_rate_limited"
    assert "rate limited" in error["message"]
    assert len(upstream.served(UPSTREAM_MODEL)) == 1 and len(upstream.served(BACKUP_MODEL)) == 1
    with pytest.raises(openai.RateLimitError):
        router.client().chat.completions.create(model="claude-chain", messages=USER, stream=True)


def test_rate_limit_falls_back_to_the_next_deployment(router, upstream):
    upstream.queue(UPSTREAM_MODEL, Error(429, anthropic_error("rate limited", "rate_limit_error")))
    upstream.queue(BACKUP_MODEL, Text("from the backup"))
    raw = router.client().chat.completions.with_raw_response.create(model="claude-chain", messages=USER)
    assert raw.parse().choices[0].message.content == "from the backup"
    assert raw.headers["x-agent-router-deployment"] == "claude-backup"

    upstream.queue(UPSTREAM_MODEL, Error(429, anthropic_error("rate limited", "rate_limit_error")))
    upstream.queue(BACKUP_MODEL, Text("streamed from the backup"))
    chunks = list(router.client().chat.completions.create(model="claude-chain", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed from the backup"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("garbage", [InvalidJSON(), Garbage()], ids=["invalid-json", "html"])
def test_an_answer_that_is_garbage_falls_back_before_the_first_byte(router, upstream, stream, garbage):
    upstream.queue(UPSTREAM_MODEL, garbage)
    upstream.queue(BACKUP_MODEL, Text("from the backup"))
    with router.client() as client:
        if stream:
            chunks = list(client.chat.completions.create(model="claude-chain", messages=USER, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = client.chat.completions.create(model="claude-chain", messages=USER).choices[0].message.content
    assert text == "from the backup"
    assert len(upstream.served(UPSTREAM_MODEL)) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_too_long_is_context_length_exceeded(router, upstream, stream):
    upstream.always(UPSTREAM_MODEL, Error(400, CONTEXT_EXCEEDED_ANTHROPIC))
    with pytest.raises(openai.BadRequestError) as caught:
        result = router.client().chat.completions.create(model="claude", messages=USER, stream=stream)
        list(result) if stream else None
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert "prompt is too long" in caught.value.message


@pytest.mark.parametrize(("status", "body", "code"), [
    (500, anthropic_error("internal boom", "api_error"), "upstream_server_error"),
    (529, anthropic_error("overloaded", "overloaded_error"), "upstream_server_error"),
    (401, anthropic_error("invalid x-api-key", "authentication_error"), "upstream_authentication_failed"),
])
def test_upstream_failures_become_502(router, upstream, status, body, code):
    upstream.always(UPSTREAM_MODEL, Error(status, body))
    with pytest.raises(openai.APIStatusError) as caught:
        router.client().chat.completions.create(model="claude", messages=USER)
    assert caught.value.status_code == 502
    assert caught.value.code == code


def test_other_bad_request_is_passed_on_as_400(router, upstream):
    upstream.always(UPSTREAM_MODEL, Error(400, anthropic_error("messages: text content blocks must be non-empty")))
    with pytest.raises(openai.BadRequestError) as caught:
        router.client().chat.completions.create(model="claude-chain", messages=USER)
    assert caught.value.code == "invalid_request"
    assert "must be non-empty" in caught.value.message
    assert upstream.served(BACKUP_MODEL) == [], "the caller's mistake is not retried elsewhere"


def test_unreachable_upstream_is_502_connection_error(start_router):
    router = start_router(anthropic_config(f"http://127.0.0.1:{free_port()}"))
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            list(router.client().chat.completions.create(model="claude", messages=USER, stream=stream) or [])
        assert caught.value.status_code == 502
        assert caught.value.code == "upstream_connection_error"


def test_silent_upstream_is_504(upstream, start_router):
    router = start_router(anthropic_config(upstream.url, timeout=0.5))
    upstream.always(UPSTREAM_MODEL, Hang(5))
    with pytest.raises(openai.APIStatusError) as caught:
        router.client().chat.completions.create(model="claude", messages=USER)
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"


def test_stream_broken_midway_ends_with_an_error_event(router, upstream):
    upstream.queue(UPSTREAM_MODEL, ResetMidStream(after_chunks=4))
    with router.http() as http, http.stream("POST", "/v1/chat/completions",
                                            headers={"authorization": "Bearer test-key"},
                                            json={"model": "claude", "messages": USER, "stream": True}) as resp:
        assert resp.status_code == 200
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert any(p.get("choices") and p["choices"][0]["delta"].get("content") for p in payloads)
    error = payloads[-1]["error"]
    assert error["type"] == "upstream_error" and error["code"] == "upstream_connection_error"


def test_litellm_messages_lose_their_decorations_and_tracebacks():
    exceptions = start_loading().result(timeout=90).exceptions  # offline import, as the router does it

    exc = exceptions.APIError(status_code=503, llm_provider="anthropic", model="m", message=(
        'AnthropicException - {"type":"error","error":{"type":"api_error","message":"busy"}}\n'
        'Traceback (most recent call last):\n  File "/secret/path.py", line 1'))
    error = to_provider_error(exc, "anthropic")
    assert isinstance(error, UpstreamServerError) and error.status == 502
    assert "busy" in error.message and "Traceback" not in error.message and "/secret" not in error.message
    assert upstream_text(exceptions.BadRequestError(message="x", model="m", llm_provider="anthropic")) == "x"


# -- lazy, offline import ---------------------------------------------------------------------------------
def _run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_mock_only_router_never_imports_litellm(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("providers: {local: {type: mock}}\ndeployments: {m: {provider: local, model: mock-1}}\n"
                      "models: {m: [m]}\n" + with_test_identity(""))
    out = _run_python(f"""
        import sys
        import router.app, providers
        from tests.harness import RouterServer
        server = RouterServer({str(config)!r}).start()
        try:
            reply = server.client().chat.completions.create(model="m", messages=[{{"role": "user", "content": "hi"}}])
            assert reply.choices[0].message.content.startswith("Mock answer"), reply
        finally:
            server.stop()
        print("litellm imported:", "litellm" in sys.modules)
    """)
    assert "litellm imported: False" in out


def test_litellm_import_makes_no_network_call():
    out = _run_python("""
        import os, socket
        os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        attempts = []
        real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

        def connect(self, address):
            if not (isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1")) and \\
                    not isinstance(address, (str, bytes)):
                attempts.append(address)
                raise OSError("network disabled in this test")
            return real_connect(self, address)

        def getaddrinfo(host, *args, **kwargs):
            if host not in ("127.0.0.1", "::1", "localhost", None):
                attempts.append(host)
                raise OSError("network disabled in this test")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
        from providers.litellm_bridge import start_loading
        litellm = start_loading().result(timeout=80)
        print("tiktoken dir:", os.environ["TIKTOKEN_CACHE_DIR"])
        print("cost map entries:", len(litellm.model_cost))
        print("network attempts:", attempts)
    """)
    assert "network attempts: []" in out
    assert "litellm_core_utils/tokenizers" in out
    assert int(out.split("cost map entries:")[1].split()[0]) > 100


# -- pure reshaping ------------------------------------------------------------------------------------------
def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    return {"id": "c1", "created": 1, "model": "m", "object": "chat.completion.chunk", "provider_specific_fields": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], "usage": usage}


def test_chunk_shaper_gives_each_new_call_its_own_index():
    shaper = ChunkShaper(include_usage=True)
    out = [shaper.feed(c) for c in [
        _chunk({"role": "assistant", "content": None, "tool_calls": None}),
        _chunk({"tool_calls": [{"index": 0, "id": "a", "type": "function",
                                "function": {"name": "f", "arguments": ""}}]}),
        _chunk({"content": "", "tool_calls": [{"index": 0, "id": None, "type": "function",
                                               "function": {"name": None, "arguments": "{}"}}]}),
        _chunk({"tool_calls": [{"index": 0, "id": "b", "type": "function",
                                "function": {"name": "g", "arguments": "{"}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        _chunk({"content": None, "provider_specific_fields": None}),
        _chunk({}, "tool_calls", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
    ]]
    assert out[5] is None, "an empty delta carries nothing"
    deltas = [json.loads(o)["choices"][0]["delta"] for o in out if o]
    assert deltas[0] == {"role": "assistant"}
    assert [d["tool_calls"][0]["index"] for d in deltas[1:5]] == [0, 0, 1, 1]
    assert deltas[2] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    last = json.loads(out[6])
    assert "usage" not in last and last["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(shaper.finish()) == {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                           "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                                    "total_tokens": 5}}
    assert ChunkShaper(include_usage=False).finish() is None


def test_completion_reshape_drops_litellm_padding():
    data = openai_completion({
        "id": "x", "created": 5, "model": "m", "object": "chat.completion", "system_fingerprint": None,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "hi", "tool_calls": None, "function_call": None,
            "provider_specific_fields": {"citations": None}}}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5, "cache_read_input_tokens": 0,
                  "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": None}}})
    assert data == {"id": "x", "object": "chat.completion", "created": 5, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": None}, "finish_reason": "stop",
         "logprobs": None}], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5,
                                       "prompt_tokens_details": {"cached_tokens": 2}}}
    assert_matches("CreateChatCompletionResponse", data)

