"""``/v1/messages`` edges that need no upstream: identity, access, errors in Anthropic's shape (so the official
SDK raises its usual classes), count_tokens without an Anthropic deployment, and model discovery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from tests.configs import TEST_KEY_HASH, openai_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer

LIMITED = f"""
roles:
  tester: {{models: ["*"], tools: {{allow: ["*"]}}}}
  narrow: {{models: [fast], tools: {{allow: [read_file]}}}}
agents:
  test-agent: {{role: tester, keys: [{{hash: "{TEST_KEY_HASH}"}}]}}
  narrow-agent: {{role: narrow, keys: [{{hash: "sha256:{'0' * 64}"}}]}}
"""

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(openai_config(upstream.openai_base_url, LIMITED))


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_unknown_key_is_the_sdks_authentication_error(router: RouterServer) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        router.anthropic(api_key="not-a-key").messages.create(model="fast", max_tokens=16, messages=USER)
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_unknown_model_is_not_found(router: RouterServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        router.anthropic().messages.create(model="no-such-model", max_tokens=16, messages=USER)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


@pytest.mark.parametrize("body, field", [
    ({"model": "fast", "messages": USER}, "max_tokens"),
    ({"model": "fast", "max_tokens": 10, "messages": []}, "messages"),
    ({"model": "fast", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, "messages.0"),
    ({"model": "fast", "max_tokens": 10, "messages": USER, "stream": "yes"}, "stream"),
    ({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
])
def test_bad_requests_are_invalid_request_errors(router: RouterServer, body: dict[str, Any], field: str) -> None:
    with router.http() as http:
        response = http.post("/v1/messages", json=body, headers={"x-api-key": "test-key"})
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error" and field in error["message"]


def test_malformed_json_and_nul_bytes(router: RouterServer) -> None:
    with router.http() as http:
        bad = http.post("/v1/messages", content=b'{"model": "fast",', headers={"x-api-key": "test-key"})
        nul = http.post("/v1/messages", content=b"\x00\x00", headers={"x-api-key": "test-key"})
    for response in (bad, nul):
        assert response.status_code == 400 and _error(response)["type"] == "invalid_request_error"


def test_unknown_path_and_method_answer_in_anthropic_shape(router: RouterServer) -> None:
    with router.http() as http:
        missing = http.post("/v1/messages/nope", json={}, headers={"x-api-key": "test-key"})
        method = http.get("/v1/messages", headers={"x-api-key": "test-key"})
    assert missing.status_code == 404 and _error(missing)["type"] == "not_found_error"
    assert method.status_code == 405 and _error(method)["type"] == "invalid_request_error"
    assert "POST" in method.headers["allow"]


def test_query_string_is_ignored(router: RouterServer, upstream: FakeUpstream) -> None:
    """Claude Code posts to /v1/messages?beta=true: the path decides (here: a 401, not a 404)."""
    with router.http() as http:
        response = http.post("/v1/messages?beta=true", json={"model": "fast", "max_tokens": 5, "messages": USER})
    assert response.status_code == 401 and _error(response)["type"] == "authentication_error"


def test_conflicting_key_headers_are_refused(router: RouterServer) -> None:
    with router.http() as http:
        response = http.post("/v1/messages", json={"model": "fast", "max_tokens": 5, "messages": USER},
                             headers={"x-api-key": "test-key", "authorization": "Bearer other-key"})
    assert response.status_code == 401 and _error(response)["type"] == "authentication_error"


def test_count_tokens_without_an_anthropic_deployment_is_estimated(router: RouterServer) -> None:
    client = router.anthropic()
    small = client.messages.count_tokens(model="fast", messages=USER)
    large = client.messages.count_tokens(model="fast", messages=[{"role": "user", "content": "word " * 500}],
                                         system=[{"type": "text", "text": "be brief"}])
    assert 0 < small.input_tokens < 30
    assert large.input_tokens > small.input_tokens + 400


def test_count_tokens_needs_a_known_key(router: RouterServer) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        router.anthropic(api_key="nope").messages.count_tokens(model="fast", messages=USER)


def test_model_list_in_anthropic_shape_for_anthropic_clients(router: RouterServer) -> None:
    page = router.anthropic().models.list(limit=1000)
    ids = [model.id for model in page.data]
    assert ids == sorted(ids) and "fast" in ids and "both" in ids
    assert all(model.type == "model" for model in page.data)
    assert page.has_more is False and page.first_id == ids[0] and page.last_id == ids[-1]
    one = router.anthropic().models.list(limit=1)
    assert len(one.data) == 1 and one.has_more is True
    with router.http() as http:  # an OpenAI client (no anthropic-version) keeps OpenAI's shape
        openai_shape = http.get("/v1/models", headers={"authorization": "Bearer test-key"}).json()
    assert openai_shape["object"] == "list" and openai_shape["data"][0]["object"] == "model"


def test_model_discovery_is_scoped_to_the_role(upstream: FakeUpstream,
                                               start_router: Callable[..., RouterServer]) -> None:
    import hashlib
    narrow_hash = hashlib.sha256(b"narrow-key").hexdigest()
    router = start_router(openai_config(upstream.openai_base_url, LIMITED.replace("0" * 64, narrow_hash)))
    page = router.anthropic(api_key="narrow-key").models.list()
    assert [model.id for model in page.data] == ["fast"]
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        router.anthropic(api_key="narrow-key").messages.create(model="both", max_tokens=5, messages=USER)
    assert caught.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
