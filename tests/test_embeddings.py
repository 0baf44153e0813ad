"""``POST /v1/embeddings`` through the real router: the official openai SDK against fake upstreams on loopback,
the built-in mock, and litellm pointed at the fake; model access, rules, fallback, the skip of a deployment that
cannot embed, and the ledger's rows (input tokens only, priced)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import openai
import pytest

from providers.litellm_embeddings import openai_embeddings
from providers.mock_embeddings import mock_embeddings
from router.errors import UpstreamBadRequest, UpstreamServerError
from tests.configs import with_test_identity
from tests.fakes.behaviours import Error, Scripted, Text
from tests.fakes.embeddings import fake_vector
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer, wait_until
from tests.ledger_helpers import run_cli, usage_rows
from tests.spec import assert_matches

NARROW_KEY = "narrow-key"
NARROW_HASH = "sha256:" + hashlib.sha256(NARROW_KEY.encode()).hexdigest()
EMBED_PRICE = 100.0  # USD per million input tokens, far from any real price so the row's cost is unmistakable

RULES = """
rules:
  - name: embeddings-to-priced
    when: {api: embeddings, model: routed}
    route: {deployments: [priced]}
  - name: chat-only
    when: {api: chat, model: routed}
    route: {deployments: [catalog]}
"""


def embeddings_config(root: str, tmp_path: Path) -> str:
    (tmp_path / "routing_rules").mkdir(exist_ok=True)
    (tmp_path / "routing_rules" / "10-embeddings.yaml").write_text(RULES)
    return f"""
rules: routing_rules
providers:
  fake: {{type: openai, base_url: {root}/v1, api_key: sk-upstream-secret, timeout: 5}}
  claude-up: {{type: anthropic, base_url: {root}, api_key: sk-ant-secret, timeout: 5}}
deployments:
  catalog: {{provider: fake, model: text-embedding-3-small}}
  priced:
    provider: fake
    model: up-embed
    prices: {{input_per_million: {EMBED_PRICE}, output_per_million: 0}}
  broken: {{provider: fake, model: up-broken}}
  claude: {{provider: claude-up, model: up-claude}}
models:
  small: [catalog]
  paid: [priced]
  fallback: [broken, priced]
  claude-only: [claude]
  claude-first: [claude, priced]
  routed: [catalog]
{with_test_identity(f'''
roles:
  narrow: {{models: [paid], tools: {{allow: []}}, limits: {{requests_per_minute: 2}}}}
agents:
  narrow-agent: {{role: narrow, keys: [{{hash: "{NARROW_HASH}"}}]}}
''')}
"""


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Any, tmp_path: Path) -> RouterServer:
    server: RouterServer = start_router(embeddings_config(upstream.url, tmp_path))
    return server


def request_rows(router: RouterServer, count: int) -> list[dict[str, Any]]:
    url = router.settings.database_url
    assert wait_until(lambda: len(usage_rows(url, "request")) >= count, timeout=10)
    return usage_rows(url, "request")


def test_the_sdk_gets_float_vectors_relayed_unchanged_and_the_ledger_prices_input_tokens(
        router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-embed", Text(usage=(42, 0)))
    with router.http() as http:
        answer = http.post("/v1/embeddings", headers={"authorization": "Bearer test-key"},
                           json={"model": "paid", "input": "the quick brown fox", "encoding_format": "float",
                                 "dimensions": 4, "user": "u-1", "future_field": {"kept": True}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_matches("CreateEmbeddingResponse", body)
    assert body["data"] == [{"object": "embedding", "index": 0,
                             "embedding": fake_vector("up-embed", "the quick brown fox", 4)}]
    assert answer.headers["x-agent-router-deployment"] == "priced"
    sent = upstream.served("up-embed")[0]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "up-embed", "input": "the quick brown fox", "encoding_format": "float",
                         "dimensions": 4, "user": "u-1", "future_field": {"kept": True}}
    assert sent.headers["Authorization"] == "Bearer sk-upstream-secret"
    [row] = request_rows(router, 1)
    assert (row["api"], row["status"], row["deployment"]) == ("embeddings", "ok", "priced")
    assert (row["prompt_tokens"], row["completion_tokens"], row["estimated"]) == (42, 0, 0)
    assert row["cost_nano"] == round(42 * EMBED_PRICE / 1e6 * 1e9) and row["price_known"] == 1


def test_the_sdk_default_base64_and_list_inputs_decode_to_the_upstream_vectors(
        router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    # The SDK asks for base64 by default and decodes it: the floats must survive the router untouched.
    result = client.embeddings.create(model="paid", input=["alpha", "beta gamma"])
    assert [item.index for item in result.data] == [0, 1]
    assert [item.embedding for item in result.data] == [fake_vector("up-embed", "alpha"),
                                                        fake_vector("up-embed", "beta gamma")]
    assert upstream.served("up-embed")[0].body["encoding_format"] == "base64"
    assert result.usage.prompt_tokens == 11
    tokens = client.embeddings.create(model="paid", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert [item.embedding for item in tokens.data] == [fake_vector("up-embed", [1, 2, 3]),
                                                        fake_vector("up-embed", [4, 5])]
    flat = client.embeddings.create(model="paid", input=[7, 8, 9], encoding_format="float")
    assert flat.data[0].embedding == fake_vector("up-embed", [7, 8, 9])
    with router.http() as http:
        raw = http.post("/v1/embeddings", headers={"authorization": "Bearer test-key"},
                        json={"model": "paid", "input": "x", "encoding_format": "base64"}).json()
    # The spec types ``embedding`` as an array only; base64 is a string there, as OpenAI itself answers.
    assert [sorted(item) for item in raw["data"]] == [["embedding", "index", "object"]]
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == fake_vector("up-embed", "x")


def test_a_failing_deployment_falls_back_to_the_next(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.always("up-broken", Error(500, {"error": {"message": "embedding backend down"}}))
    result = router.client().embeddings.with_raw_response.create(model="fallback", input="hello")
    assert result.headers["x-agent-router-deployment"] == "priced"
    tries = int(result.headers["x-agent-router-attempts"]) - 1  # the broken one is retried once, then left
    assert result.parse().data[0].embedding == fake_vector("up-embed", "hello")
    assert len(upstream.served("up-broken")) == tries >= 1
    [row] = request_rows(router, 1)
    assert (row["deployment"], row["api"], row["status"]) == ("priced", "embeddings", "ok")
    attempts = usage_rows(router.settings.database_url, "attempt")
    assert [(a["deployment"], a["status"]) for a in attempts] == [("broken", "error")] * tries + [("priced", "ok")]


def test_a_deployment_that_cannot_embed_is_skipped_with_a_clear_reason(router: RouterServer,
                                                                        upstream: FakeUpstream) -> None:
    client = router.client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="claude-only", input="hello")
    message = refused.value.message
    assert "claude skipped: its provider claude-up (type anthropic) cannot serve embeddings" in message, message
    assert refused.value.code == "unsupported_capability"
    assert upstream.served("up-claude") == []  # never sent anywhere
    result = client.embeddings.with_raw_response.create(model="claude-first", input="hello")
    assert result.headers["x-agent-router-deployment"] == "priced"
    assert upstream.served("up-claude") == []


def test_model_access_limits_stream_and_malformed_bodies_are_refused_in_openais_shape(router: RouterServer,
                                                                                upstream: FakeUpstream) -> None:
    narrow = router.client(api_key=NARROW_KEY)
    assert narrow.embeddings.create(model="paid", input="ok").data
    with pytest.raises(openai.PermissionDeniedError):
        narrow.embeddings.create(model="small", input="not for this role")
    assert narrow.embeddings.create(model="paid", input="ok").data  # the role's second request this minute
    with pytest.raises(openai.RateLimitError):
        narrow.embeddings.create(model="paid", input="one too many")
    with pytest.raises(openai.AuthenticationError):
        router.client(api_key="ar-unknown").embeddings.create(model="paid", input="x")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"model": "paid", "input": "x", "stream": True}, "stream"),
        ({"model": "paid"}, "input"),
        ({"input": "x"}, "model"),
        ({"model": "paid", "input": []}, "input"),
        ({"model": "paid", "input": [""]}, "input[0]"),
        ({"model": "paid", "input": ["a", 1]}, "input[1]"),
        ({"model": "paid", "input": [[1, "2"]]}, "input[0]"),
        ({"model": "paid", "input": {"text": "x"}}, "input"),
        ({"model": "paid", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "paid", "input": "x", "dimensions": 0}, "dimensions"),
    ]
    with router.http() as http:
        for body, param in bad:
            answer = http.post("/v1/embeddings", headers={"authorization": "Bearer test-key"}, json=body)
            assert answer.status_code == 400, (body, answer.text)
            error = answer.json()["error"]
            assert (error["type"], error["param"]) == ("invalid_request_error", param), (body, error)
        unknown = http.post("/v1/embeddings", headers={"authorization": "Bearer test-key"},
                            json={"model": "nope", "input": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert [r.body["input"] for r in upstream.served()] == ["ok", "ok"]  # nothing refused reached the upstream


def test_rules_match_api_embeddings(router: RouterServer, upstream: FakeUpstream) -> None:
    result = router.client().embeddings.with_raw_response.create(model="routed", input="hello")
    assert result.headers["x-agent-router-rule"] == "embeddings-to-priced"
    assert result.headers["x-agent-router-deployment"] == "priced"
    chat = router.client().chat.completions.with_raw_response.create(
        model="routed", messages=[{"role": "user", "content": "hi"}])
    assert chat.headers["x-agent-router-rule"] == "chat-only"


def test_usage_without_a_count_is_estimated_and_the_catalog_prices_it(router: RouterServer,
                                                                      upstream: FakeUpstream) -> None:
    upstream.queue("text-embedding-3-small", Text(usage=None))
    client = router.client()
    client.embeddings.create(model="small", input="one two three four", encoding_format="float")
    upstream.queue("text-embedding-3-small", Scripted(answer={"object": "list", "model": "m", "data": [
        {"object": "embedding", "index": 0, "embedding": [0.5]}], "usage": {"prompt_tokens": -3}}))
    client.embeddings.create(model="small", input="five six", encoding_format="float")
    client.embeddings.create(model="small", input="seven", encoding_format="float")  # reports 11
    rows = request_rows(router, 3)
    assert [(r["estimated"], r["completion_tokens"]) for r in rows] == [(1, 0), (1, 0), (0, 0)]
    assert rows[0]["prompt_tokens"] == 4 and rows[1]["prompt_tokens"] == 2 and rows[2]["prompt_tokens"] == 11
    # text-embedding-3-small costs $0.02 per million input tokens in litellm's shipped map.
    assert [r["cost_nano"] for r in rows] == [80, 40, 220]


def test_usage_report_groups_embeddings_by_api(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    client.embeddings.create(model="paid", input="a")
    client.embeddings.create(model="paid", input="b")
    client.chat.completions.create(model="routed", messages=[{"role": "user", "content": "hi"}])
    request_rows(router, 3)
    result = run_cli("usage", "report", "--group-by", "api", "--format", "json", url=router.settings.database_url)
    assert result.returncode == 0, result.stderr
    groups = {group["api"]: group for group in json.loads(result.stdout)["groups"]}
    assert groups["embeddings"]["requests"] == 2 and groups["chat"]["requests"] == 1
    assert groups["embeddings"]["prompt_tokens"] == 22 and groups["embeddings"]["completion_tokens"] == 0


def test_the_built_in_mock_embeds_with_no_config(tmp_path: Path) -> None:
    """No config at all (the built-in default): its ``mock`` model answers embeddings too, deterministic, with
    ``dimensions`` honoured and the SDK's base64 decoded, and usage in the ledger."""
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    created = run_cli("keys", "create", "--agent", "demo", "--role", "default", url=database)
    assert created.returncode == 0, created.stderr
    router = RouterServer(None, database_url=database).start()
    try:
        client = router.client(api_key=created.stdout.strip())
        first = client.embeddings.create(model="mock", input=["hello world", "bye"])
        again = client.embeddings.create(model="mock", input="hello world", dimensions=64, encoding_format="float")
        assert [len(item.embedding) for item in first.data] == [16, 16] and len(again.data[0].embedding) == 64
        assert first.data[0].embedding != first.data[1].embedding
        assert first.data[0].embedding == client.embeddings.create(model="mock", input="hello world").data[0].embedding
        assert abs(sum(value * value for value in again.data[0].embedding) - 1) < 1e-6
        assert first.usage.prompt_tokens == 3
        rows = request_rows(router, 3)
        assert [(r["api"], r["prompt_tokens"], r["completion_tokens"], r["cost_nano"]) for r in rows] == \
            [("embeddings", 3, 0, 0), ("embeddings", 2, 0, 0), ("embeddings", 2, 0, 0)]
    finally:
        router.stop()


def test_a_litellm_deployment_embeds_offline_through_aembedding(upstream: FakeUpstream, start_router: Any) -> None:
    """litellm (``openai/`` prefix, ``api_base`` at the fake) answers in OpenAI's shape; the caller's base64 is
    packed by the router from litellm's floats. (litellm drops ``dimensions`` for a model it does not know to
    take it, so the model here is one it knows.)"""
    lite_model = "text-embedding-3-small"
    router: RouterServer = start_router(f"""
providers:
  lite: {{type: litellm, base_url: "{upstream.openai_base_url}", api_key: sk-lite, timeout: 10}}
deployments:
  lite:
    provider: lite
    model: openai/text-embedding-3-small
    prices: {{input_per_million: {EMBED_PRICE}, output_per_million: 0}}
models:
  lite: [lite]
{with_test_identity("")}
""")
    upstream.always(lite_model, Text(usage=(9, 0)))
    client = router.client()
    floats = client.embeddings.create(model="lite", input=["one", "two"], encoding_format="float", dimensions=8)
    assert_matches("CreateEmbeddingResponse", floats.model_dump())
    assert [item.embedding for item in floats.data] == [fake_vector(lite_model, "one"), fake_vector(lite_model, "two")]
    decoded = client.embeddings.create(model="lite", input="three")  # the SDK's default: base64
    assert decoded.data[0].embedding == fake_vector(lite_model, "three")
    sent = upstream.served(lite_model)[0]
    assert sent.path == "/v1/embeddings" and sent.body["input"] == ["one", "two"] and sent.body["dimensions"] == 8
    rows = request_rows(router, 2)
    assert [(r["api"], r["deployment"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == \
        [("embeddings", "lite", 9, 0)] * 2
    assert rows[0]["cost_nano"] == round(9 * EMBED_PRICE / 1e6 * 1e9)


def test_an_answer_without_vectors_is_the_upstreams_fault_and_falls_back(router: RouterServer,
                                                                         upstream: FakeUpstream) -> None:
    upstream.queue("up-broken", Scripted(answer={"object": "list", "model": "up-broken"}),
                   Scripted(answer=b"[1, 2, 3]"))
    result = router.client().embeddings.with_raw_response.create(model="fallback", input="hello")
    assert result.headers["x-agent-router-deployment"] == "priced"
    assert result.parse().data[0].embedding == fake_vector("up-embed", "hello")


def test_litellm_answers_are_reshaped_to_openais_and_packed_as_base64() -> None:
    """Pure: litellm's ``model_dump()`` (its own padding fields included) in OpenAI's exact shape."""
    dumped = {"object": "list", "model": "text-embedding-3-small", "_hidden_params": {"x": 1},
              "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3, "prompt_tokens_details": None}}
    floats = openai_embeddings(dumped, "m", as_base64=False, where="lite")
    assert floats == {"object": "list", "model": "text-embedding-3-small",
                      "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
                      "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    assert_matches("CreateEmbeddingResponse", floats)
    packed = openai_embeddings(dumped, "m", as_base64=True, where="lite")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -0.25)
    for broken in ({"object": "list"}, {"data": [{"index": 0}]}):
        with pytest.raises(UpstreamServerError):
            openai_embeddings(broken, "m", as_base64=False, where="lite")


def test_the_mock_vectors_are_deterministic_unit_vectors_of_the_size_asked() -> None:
    one = mock_embeddings({"model": "mock", "input": ["a b c", [1, 2]], "dimensions": 40})
    assert_matches("CreateEmbeddingResponse", one)
    assert [len(item["embedding"]) for item in one["data"]] == [40, 40]
    assert one["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert mock_embeddings({"model": "mock", "input": "a b c", "dimensions": 40})["data"][0] == one["data"][0]
    assert mock_embeddings({"model": "other", "input": "a b c"})["data"][0]["embedding"] != one["data"][0]["embedding"]
    with pytest.raises(UpstreamBadRequest):
        mock_embeddings({"model": "mock", "input": "x", "dimensions": 100_000})
