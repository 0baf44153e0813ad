"""A fault of ours, or of the request, is never blamed on a deployment (issue 11, item 1, executor side).

A body nested deeper than the upstream encoder allows still parses; an adapter that cannot encode it must
not count an upstream fault on every deployment of the chain (which let one agent cool down the whole
fleet's deployments through Redis): the caller gets a 400 at once and no breaker moves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.breaker_helpers import breaker_state, counters_backend
from tests.configs import with_test_identity

USER = [{"role": "user", "content": "hello"}]


def config(base_url: str) -> str:
    return with_test_identity(f"""
providers:
  fake: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5}}
  other: {{type: openai, base_url: {base_url}, api_key: sk-up, timeout: 5}}
deployments:
  a: {{provider: fake, model: up-a}}
  b: {{provider: other, model: up-b}}
models:
  chat: [a, b]
routing:
  retries: 1
  backoff_base: 0
  cooldown: {{failures: 2, min_requests: 2, window_seconds: 30, cooldown_seconds: 60}}
""")


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    yield from counters_backend(request.param)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_a_body_the_adapter_cannot_encode_is_the_callers_400_and_cools_nothing(upstream, start_router, backend):
    router = start_router(config(upstream.openai_base_url), **backend)
    with httpx.Client(base_url=router.url, headers={"authorization": "Bearer test-key"}, timeout=30) as http:
        for _ in range(4):
            answer = http.post("/v1/chat/completions",
                               json={"model": "chat", "messages": USER, "metadata_extra": nested(300)})
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            # The API's nesting guard refuses it first (request_too_large); were it to let such a body through, the
            # adapter's encoder would refuse it as request_not_forwardable: either way the caller's 400.
            assert error["type"] == "invalid_request_error"
            assert error["code"] in ("request_too_large", "request_not_forwardable")
            assert "Traceback" not in answer.text
        assert upstream.served() == [], "nothing was sent upstream"
        assert breaker_state(router, backend, "a") == breaker_state(router, backend, "b") == "closed"
        ok = http.post("/v1/chat/completions", json={"model": "chat", "messages": USER})
        assert ok.status_code == 200
        assert (ok.headers["x-agent-router-deployment"], ok.headers["x-agent-router-attempts"]) == ("a", "1")


class BrokenAdapter:
    """A provider adapter with a bug in it: whatever it is asked, it fails before anything is sent."""

    name = "fake"

    async def complete(self, call: Any) -> Any:
        raise TypeError("an adapter bug")

    async def stream(self, call: Any) -> AsyncIterator[bytes]:
        raise TypeError("an adapter bug")
        yield b""  # pragma: no cover  (makes this an async generator)

    async def close(self) -> None:
        return None


def test_an_adapter_bug_is_ours_logged_once_and_cools_nothing(upstream, start_router, backend, caplog):
    caplog.set_level(logging.WARNING, logger="agent_router")
    router = start_router(config(upstream.openai_base_url), **backend)
    providers = router.state.snapshot.providers
    providers["fake"] = BrokenAdapter()
    with httpx.Client(base_url=router.url, headers={"authorization": "Bearer test-key"}, timeout=30) as http:
        for stream in (False, True, False, True):
            answer = http.post("/v1/chat/completions", json={"model": "chat", "messages": USER, "stream": stream})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-agent-router-deployment"] == "b", "the next adapter is still tried"
        providers["other"] = BrokenAdapter()
        for stream in (False, True):
            answer = http.post("/v1/chat/completions", json={"model": "chat", "messages": USER, "stream": stream})
            assert answer.status_code == 500, answer.text
            error = answer.json()["error"]
            assert (error["type"], error["code"]) == ("api_error", "internal_error")
            assert "Traceback" not in answer.text and "an adapter bug" not in answer.text
    assert len(upstream.served("up-b")) == 4 and upstream.served("up-a") == []
    assert breaker_state(router, backend, "a") == breaker_state(router, backend, "b") == "closed"
    bugs = [r for r in caplog.records if r.name == "agent_router.executor"]
    assert len(bugs) == 1 and bugs[0].exc_info is not None, "one traceback in the log, not one per attempt"
