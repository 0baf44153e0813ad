"""What cannot be forwarded, or would cost every other agent, is the caller's 400 before any upstream attempt.

A body nested deeper than the encoder allows used to parse, fail inside every attempt, count as an upstream
fault on each deployment of the chain and cool them down for everyone (fleet-wide through Redis). Caps on
tools, messages, tool calls and field sizes keep one request from costing the event loop and the ledger
what a thousand ordinary ones do.
"""

from __future__ import annotations

import hashlib
import uuid

import httpx
import orjson
import pytest

from tests.backing_services import REDIS_URL
from tests.configs import with_test_identity

OTHER_KEY = "other-agent-key"
USER = [{"role": "user", "content": "hello"}]


def config(base_url: str) -> str:
    digest = hashlib.sha256(OTHER_KEY.encode()).hexdigest()
    return with_test_identity(f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5}}
deployments:
  a: {{provider: fake, model: up-a}}
  b: {{provider: fake, model: up-b}}
models:
  chat: [a, b]
routing:
  retries: 1
  cooldown: {{failures: 2, window_seconds: 60, cooldown_seconds: 60}}
agents:
  other-agent: {{role: tester, keys: [{{hash: "sha256:{digest}"}}]}}
""")


def post(router, body: bytes | dict, key: str = "test-key") -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with router.http() as http:
        return http.post("/v1/chat/completions", content=content,
                         headers={"authorization": f"Bearer {key}", "content-type": "application/json"})


def nested(depth: int) -> bytes:
    """A chat body whose ``metadata`` holds arrays nested so that the whole body is ``depth`` levels deep."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return f'{{"model": "chat", "messages": [{{"role": "user", "content": "x"}}], "metadata": {inner}}}'.encode()


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return {"redis_url": REDIS_URL, "redis_prefix": f"test-guard-{uuid.uuid4().hex}:"}


@pytest.mark.parametrize("depth", [300, 65])
def test_a_body_nested_too_deep_is_the_callers_400_and_never_cools_a_deployment(upstream, start_router, backend,
                                                                               depth):
    router = start_router(config(upstream.openai_base_url), **backend)
    for _ in range(4):  # twice the breaker's threshold, on both deployments of the chain
        resp = post(router, nested(depth))
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "metadata"
        assert "64 levels" in error["message"] and "AGENT_ROUTER_MAX_JSON_DEPTH" in error["message"]
        assert "Traceback" not in resp.text
    assert upstream.served() == [], "nothing was sent upstream"
    # Another agent is served by the first deployment in one attempt: no breaker was opened.
    with router.client(api_key=OTHER_KEY) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert raw.headers["x-agent-router-deployment"] == "a" and raw.headers["x-agent-router-attempts"] == "1"


def test_nesting_up_to_the_limit_passes_and_the_limit_is_a_setting(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    assert post(router, nested(64)).status_code == 200
    deep_schema: dict = {"type": "string"}
    for _ in range(20):  # a JSON-schema tool parameter 20 objects deep: 45 levels in the body
        deep_schema = {"type": "object", "properties": {"inner": deep_schema}}
    tool = {"type": "function", "function": {"name": "deep", "parameters": deep_schema}}
    assert post(router, {"model": "chat", "messages": USER, "tools": [tool]}).status_code == 200
    strict = start_router(config(upstream.openai_base_url), max_json_depth=16)
    resp = post(strict, {"model": "chat", "messages": USER, "tools": [tool]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "tools"
    assert "16 levels" in resp.json()["error"]["message"]


@pytest.mark.parametrize("text", [
    "[" * 1024 + "]" * 1024,
    "123456789012345678901234567890", "18446744073709551616", "-9223372036854775809", "1e308", "-1e308",
    "5e-324", '"\\u0000"', '"\\ud83d\\ude00"', '"\\udc00"', '"\\ud800"', '"\\ud800x"', "NaN", "Infinity",
    "1e400", "1" + "0" * 400, '{"a": 1, "a": 2}', '"' + "\\uffff" * 10 + '"',
])
def test_nesting_is_all_that_orjson_parses_but_cannot_encode(text):
    """The premise of the depth check: re-run on every orjson upgrade, it fails when that stops being true."""
    try:
        value = orjson.loads(f'{{"v": {text}}}')
    except orjson.JSONDecodeError:
        return
    if text.startswith("["):
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(value)
    else:
        assert orjson.loads(orjson.dumps(value)) == value or value != value


def _refused(resp: httpx.Response, setting: str, param: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"
    assert f"AGENT_ROUTER_{setting.upper()}" in error["message"] and error["param"] == param, error


def _tool(name: str, description: str = "does a thing") -> dict:
    return {"type": "function", "function": {"name": name, "description": description,
                                              "parameters": {"type": "object"}}}


def _call(n: int) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"c{n}", "type": "function", "function": {"name": "t", "arguments": "{}"}}]}


CAPS = {"max_tools": 3, "max_messages": 5, "max_tool_calls": 2, "max_tool_name_chars": 64,
        "max_tool_description_chars": 20, "max_message_chars": 30}


@pytest.mark.parametrize(("body", "setting", "param"), [
    ({"tools": [_tool(f"t{i}") for i in range(4)]}, "max_tools", "tools"),
    ({"functions": [{"name": f"f{i}"} for i in range(4)]}, "max_tools", "functions"),
    ({"messages": USER * 6}, "max_messages", "messages"),
    ({"messages": [*USER, _call(1), _call(2), _call(3)]}, "max_tool_calls", "messages"),
    ({"tools": [_tool("x" * 65)]}, "max_tool_name_chars", "tools[0].name"),
    ({"tools": [_tool("t", "y" * 21)]}, "max_tool_description_chars", "tools[0].description"),
    ({"messages": [{"role": "user", "content": "z" * 31}]}, "max_message_chars", "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "z" * 16}] * 2}]}, "max_message_chars",
     "messages[0].content"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "n" * 65, "arguments": "{}"}}]}]},
     "max_tool_name_chars", "messages[0].tool_calls[0].name"),
])
def test_each_cap_is_a_clear_400_before_any_attempt(upstream, start_router, body, setting, param):
    router = start_router(config(upstream.openai_base_url), **CAPS)
    resp = post(router, {"model": "chat", "messages": USER, **body})
    _refused(resp, setting, param)
    assert upstream.served() == []
    at_cap = {"tools": [_tool(f"t{i}", "y" * 20) for i in range(3)],
              "messages": [{"role": "user", "content": "z" * 30}, _call(1), _call(2)]}
    assert post(router, {"model": "chat", **at_cap}).status_code == 200


def test_the_default_caps_let_a_large_real_agent_request_through(upstream, start_router):
    router = start_router(config(upstream.openai_base_url))
    tools = [_tool(f"mcp__server__tool_{i}", "a long MCP tool description " * 400) for i in range(300)]
    history = [*USER, *(_call(i) for i in range(2000))]
    resp = post(router, {"model": "chat", "messages": history, "tools": tools})
    assert resp.status_code == 200, resp.text
    assert len(upstream.served()[-1].body["tools"]) == 300
