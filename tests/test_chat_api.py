"""The OpenAI-compatible surface, end to end: real router, real fake upstream, the official openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.configs import openai_config
from tests.fakes.behaviours import Error, Hang, ResetMidStream, Text, ToolCalls
from tests.harness import free_port
from tests.spec import assert_matches

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def router(upstream, start_router):
    return start_router(openai_config(upstream.openai_base_url))


def test_non_streaming_answer_has_openai_shape(router, upstream):
    upstream.queue("up-primary", Text("Hi there!", usage=(12, 3)))
    raw = router.client().chat.completions.with_raw_response.create(model="fast", messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hi there!"
    assert completion.usage.prompt_tokens == 12 and completion.usage.completion_tokens == 3
    assert_matches("CreateChatCompletionResponse", json.loads(raw.http_response.content))
    assert raw.headers["x-agent-router-deployment"] == "primary"
    assert raw.headers["x-agent-router-provider"] == "fake"
    assert raw.headers["x-request-id"]
    assert upstream.served()[0].body["model"] == "up-primary"


def test_upstream_credentials_replace_the_agents_key(router, upstream):
    router.client().chat.completions.create(model="fast", messages=USER)
    assert upstream.served()[0].headers["Authorization"] == "Bearer sk-upstream-secret"


def test_streaming_chunks_have_openai_shape_and_end_with_done(router, upstream):
    upstream.queue("up-primary", Text("streamed words here", chunk_size=4))
    with router.http() as http, http.stream("POST", "/v1/chat/completions",
                                            headers={"authorization": "Bearer test-key"},
                                            json={"model": "fast", "messages": USER, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_matches("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "streamed words here"
    assert all(c.get("usage") is None for c in chunks), "usage chunk must be hidden when not asked for"


def test_stream_usage_is_shown_when_the_client_asks(router, upstream):
    upstream.queue("up-primary", Text("abc", usage=(5, 2)))
    stream = router.client().chat.completions.create(model="fast", messages=USER, stream=True,
                                                     stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 7


def test_streamed_tool_call_deltas_reassemble(router, upstream):
    args = json.dumps({"city": "Paris", "unit": "celsius"})
    upstream.queue("up-primary", ToolCalls([("get_weather", args)], fragment=3))
    stream = router.client().chat.completions.create(model="fast", messages=USER, tools=TOOLS, stream=True)
    name, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name += call.function.name or ""
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "get_weather" and json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert finish == "tool_calls"


def test_parallel_tool_calls_non_streaming(router, upstream):
    upstream.queue("up-primary", ToolCalls([("get_weather", '{"city":"Oslo"}'), ("get_weather", '{"city":"Rome"}')]))
    completion = router.client().chat.completions.create(model="fast", messages=USER, tools=TOOLS,
                                                         parallel_tool_calls=True)
    calls = completion.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "Rome"]


def test_every_field_is_passed_through_untouched(router, upstream):
    router.client().chat.completions.create(
        model="fast", messages=USER, tools=TOOLS, tool_choice="auto", response_format={"type": "json_object"},
        n=2, seed=7, user="u-1", metadata={"team": "infra"}, temperature=0.3, logit_bias={"50256": -100},
        extra_body={"vendor_specific": {"nested": [1, 2, 3]}, "top_k": 5})
    body = upstream.served()[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["n"] == 2 and body["seed"] == 7 and body["user"] == "u-1"
    assert body["metadata"] == {"team": "infra"} and body["logit_bias"] == {"50256": -100}
    assert body["vendor_specific"] == {"nested": [1, 2, 3]} and body["top_k"] == 5
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto"


def _post(router, body, headers=None):
    with router.http() as http:
        return http.post("/v1/chat/completions", content=body,
                         headers={"authorization": "Bearer test-key", "content-type": "application/json",
                                  **(headers or {})})


def _assert_openai_error(resp, status):
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "Traceback" not in resp.text
    return error


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "fast"}', "messages"),
    (b'{"model": "fast", "messages": "hi"}', "messages"),
    (b'{"model": "fast", "messages": [{"content": "no role"}]}', "messages[0]"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
    (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
])
def test_malformed_requests_get_400(router, body, param):
    error = _assert_openai_error(_post(router, body), 400)
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param


def test_unknown_model_is_404(router):
    with pytest.raises(openai.NotFoundError) as info:
        router.client().chat.completions.create(model="no-such-model", messages=USER)
    assert info.value.body["code"] == "model_not_found"


def test_body_too_large_is_413(upstream, start_router):
    router = start_router(openai_config(upstream.openai_base_url), max_body_bytes=2000)
    big = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    _assert_openai_error(_post(router, big), 413)
    with router.http() as http:  # chunked, no content-length
        resp = http.post("/v1/chat/completions", content=iter([big[:1500], big[1500:]]),
                         headers={"authorization": "Bearer test-key", "content-type": "application/json"})
    _assert_openai_error(resp, 413)
    assert upstream.served() == []


@pytest.mark.parametrize("behaviour, status, exc", [
    (Error(500), 502, openai.InternalServerError),
    (Error(503), 502, openai.InternalServerError),
    (Error(429, headers={"retry-after": "7"}), 429, openai.RateLimitError),
    (Error(400, {"error": {"message": "bad temperature", "type": "invalid_request_error"}}), 400,
     openai.BadRequestError),
])
def test_upstream_failures_map_to_openai_errors(router, upstream, behaviour, status, exc):
    upstream.always("up-primary", behaviour)
    with pytest.raises(exc) as info:
        router.client().chat.completions.create(model="fast", messages=USER)
    assert info.value.status_code == status
    assert "Traceback" not in str(info.value.body)
    if status == 429:
        assert int(info.value.response.headers["retry-after"]) >= 1


def test_upstream_timeout_is_504(upstream, start_router):
    router = start_router(openai_config(upstream.openai_base_url, timeout=0.5))
    upstream.always("up-primary", Hang(3))
    with pytest.raises(openai.APIStatusError) as info:
        router.client().chat.completions.create(model="fast", messages=USER)
    assert info.value.status_code == 504


def test_unreachable_upstream_is_502(start_router):
    router = start_router(openai_config(f"http://127.0.0.1:{free_port()}/v1"))
    with pytest.raises(openai.APIStatusError) as info:
        router.client().chat.completions.create(model="fast", messages=USER)
    assert info.value.status_code == 502


def test_stream_broken_mid_way_ends_with_an_error_event(router, upstream):
    upstream.always("up-primary", ResetMidStream(after_chunks=2))
    with router.http() as http, http.stream("POST", "/v1/chat/completions",
                                            headers={"authorization": "Bearer test-key"},
                                            json={"model": "fast", "messages": USER, "stream": True}) as resp:
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "error" in json.loads(events[-2])
    with pytest.raises(openai.APIError):
        list(router.client().chat.completions.create(model="fast", messages=USER, stream=True))


def test_request_id_is_echoed_or_created(router):
    with router.http() as http:
        given = http.get("/healthz", headers={"x-request-id": "trace-123"})
        made = http.get("/healthz")
        unsafe = http.get("/healthz", headers={"x-request-id": "bad id\twith tab"})
    assert given.headers["x-request-id"] == "trace-123"
    assert len(made.headers["x-request-id"]) >= 16
    assert unsafe.headers["x-request-id"] != "bad id\twith tab"
    resp = _post(router, b"{broken")
    assert resp.headers["x-request-id"]


def test_models_health_ready_and_docs(router):
    models = router.client().models.list()
    assert "fast" in [m.id for m in models.data]
    assert router.client().models.retrieve("fast").id == "fast"
    with router.http() as http:
        assert http.get("/healthz").json()["status"] == "ok"
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] in ("ready", "degraded")
        assert http.get("/docs").status_code == 200
        assert "/v1/chat/completions" in http.get("/openapi.json").json()["paths"]
        not_found = http.get("/v1/nothing")
        wrong_method = http.get("/v1/chat/completions")
    _assert_openai_error(not_found, 404)
    _assert_openai_error(wrong_method, 405)


def test_concurrent_requests_all_succeed(router, upstream):
    import concurrent.futures

    client = router.client()

    def one(i: int) -> str:
        return client.chat.completions.create(model="fast", messages=[{"role": "user", "content": str(i)}]).id

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(40)))
    assert len(ids) == 40 and len(upstream.served()) == 40


def test_http_client_sees_json_error_on_wrong_content(router):
    with httpx.Client(base_url=router.url) as http:
        resp = http.post("/v1/chat/completions", data={"model": "fast"},
                         headers={"authorization": "Bearer test-key"})
    _assert_openai_error(resp, 400)


def test_non_latin_names_in_config_do_not_break_response_headers(upstream, start_router):
    from tests.configs import TEST_KEY_HASH

    config = openai_config(upstream.openai_base_url, f"""
roles:
  r: {{models: ["*"]}}
agents:
  "агент-😀": {{role: r, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}
""")
    config = (config.replace("deployments:\n  primary:", 'deployments:\n  "прим":')
              .replace("fast: [primary]", 'fast: ["прим"]').replace("both: [primary, secondary]", "both: [secondary]"))
    router = start_router(config)
    raw = router.client().chat.completions.with_raw_response.create(model="fast", messages=USER)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-agent-router-agent"] and raw.headers["x-agent-router-deployment"]


@pytest.mark.parametrize("chunk_size", [4, 1000])
def test_a_finished_stream_counts_as_a_success_for_the_deployment(router, upstream, chunk_size):
    """Whether the answer arrives in many reads or in one (the last batch then ends the client's stream in
    the same write), the deployment's stats see one success, no failure, nothing left in flight."""
    upstream.queue("up-primary", Text("a few streamed words", chunk_size=chunk_size))
    stream = router.client().chat.completions.create(model="fast", messages=USER, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "a few streamed words"
    stat = router.state.stats.get("primary")
    assert (stat.successes, stat.failures, stat.in_flight) == (1, 0, 0)
