"""How the app is assembled: FastAPI's per-request telemetry probe is decided once; the chat endpoint is served by
a plain route while the OpenAPI page still documents it, also under a prefix; no path is ever redirected."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

from router.app import create_app
from router.settings import Settings
from tests.configs import TEST_KEY, openai_config
from tests.fakes.behaviours import Text

USER = [{"role": "user", "content": "hello"}]


def test_telemetry_is_off_unless_opentelemetry_is_configured(monkeypatch):
    for name in ("FASTAPI_OTEL_AUTO_CONFIGURE", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert create_app(Settings(database_url="sqlite:///:memory:"))._telemetry["tracing"] is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert create_app(Settings(database_url="sqlite:///:memory:"))._telemetry["tracing"] is True


def test_the_setting_overrides_detection(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert create_app(Settings(opentelemetry=False, database_url="sqlite:///:memory:"))._telemetry["tracing"] is False
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    assert create_app(Settings(opentelemetry=True, database_url="sqlite:///:memory:"))._telemetry["tracing"] is True


def test_chat_is_documented_and_served_by_the_plain_asgi_handler(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    with TestClient(app) as http:
        assert "/v1/chat/completions" in http.get("/openapi.json").json()["paths"]
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        no_key = http.post("/v1/chat/completions", json=body)
        wrong_method = http.get("/v1/chat/completions")
    # The built-in config has no agents: the plain handler's refusal is an OpenAI error like any other.
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert no_key.headers["x-request-id"]
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


# -- served under a prefix, and never redirected -------------------------------------------------------------
def _mounted(inner: Any) -> FastAPI:
    """Another app that mounts the router under /prefix and runs its lifespan (Starlette runs only its own)."""
    return FastAPI(lifespan=lambda _: inner.router.lifespan_context(inner), routes=[Mount("/prefix", app=inner)])


def _fastapi_routing(inner: Any) -> Any:
    """The router's routes served by FastAPI itself, without RouterApp's plain-ASGI chat path in front."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(inner, scope, receive, send)
    return app


@pytest.mark.parametrize(("how", "base"), [({"wrap": _mounted}, "/prefix/v1"), ({"root_path": "/prefix"}, "/v1"),
                                           ({"wrap": _fastapi_routing}, "/v1")],
                         ids=["mounted", "root_path", "fastapi_fallback"])
def test_chat_is_served_under_a_prefix_streamed_or_not(upstream: Any, start_router: Any, how: dict[str, Any],
                                                       base: str) -> None:
    upstream.queue("up-primary", Text("whole answer"), Text("streamed answer"))
    router = start_router(openai_config(upstream.openai_base_url), **how)
    client = openai.OpenAI(base_url=router.url + base, api_key=TEST_KEY, max_retries=0, timeout=30)
    answer = client.chat.completions.create(model="fast", messages=USER)
    assert answer.choices[0].message.content == "whole answer"
    chunks = client.chat.completions.create(model="fast", messages=USER, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed answer"
    assert [m.id for m in client.models.list()] == ["both", "fast"]


def test_a_trailing_slash_is_never_redirected_to_the_callers_host(upstream: Any, start_router: Any) -> None:
    router = start_router(openai_config(upstream.openai_base_url))
    auth = {"authorization": f"Bearer {TEST_KEY}", "host": "attacker.example"}
    with router.http(follow_redirects=False) as http:
        for method, path in [("POST", "/v1/chat/completions/"), ("GET", "/v1/models/"), ("GET", "/readyz/"),
                             ("POST", "/v1/route/explain/")]:
            resp = http.request(method, path, headers=auth, json={"model": "fast", "messages": USER})
            assert resp.status_code == 404, (method, path, resp.status_code, resp.headers)
            assert "location" not in resp.headers and resp.json()["error"]["type"] == "invalid_request_error"
    assert upstream.served() == []
