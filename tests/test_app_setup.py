"""How the app is assembled for the hot path: FastAPI's per-request telemetry probe is decided once, and the
chat endpoint is served by a plain route while the OpenAPI page still documents it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from router.app import create_app
from router.settings import Settings


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
