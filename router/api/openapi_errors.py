"""The error answers each path can give, written into the OpenAPI page, and how each path is authenticated.

FastAPI documents only the success and a 422 it never sends here (validation failures are answered 400, see
error_handlers.py). The page is built once, on its first request: this post-processing costs nothing per call.
Every error body has the OpenAI shape (``ErrorBody``), so a generated client or a fuzzer knows what to expect.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_AGENT = {
    400: "invalid_request_error: the body or a parameter is invalid, or the request breaks a request-side policy",
    401: "authentication_error: no agent key, or an unknown, revoked or expired one",
    403: "permission_error: the agent's role may not use this model (or a tool: code tool_not_allowed)",
    404: "invalid_request_error: unknown model (code model_not_found)",
    413: "invalid_request_error: the body is larger than AGENT_ROUTER_MAX_BODY_BYTES",
    429: "rate_limit_error: a rate limit or budget of the agent or its role (code budget_exceeded); "
         "retry-after says when to retry",
    502: "upstream_error: every deployment of the plan failed",
    503: "service_unavailable: no deployment available, or the counters or key store are unreachable and the "
         "router fails closed; retry-after when known",
    504: "upstream_error: the upstream did not answer within the deadline",
}
_ADMIN = {
    400: "invalid_request_error: a parameter or the body is invalid",
    401: "authentication_error: a valid admin key is required (Authorization: Bearer, or x-admin-key)",
    404: "invalid_request_error: the admin API is disabled (AGENT_ROUTER_ADMIN_KEY unset), or no such item",
    503: "service_unavailable: the database or key store cannot be reached",
}

ERRORS_BY_PATH: dict[str, tuple[int, ...]] = {
    "/v1/chat/completions": (400, 401, 403, 404, 413, 429, 502, 503, 504),
    "/v1/route/explain": (400, 401, 403, 404, 413, 503),
    "/v1/models": (401, 503),
    "/v1/models/{model}": (401, 404, 503),
    "/v1/messages": (400, 401, 403, 404, 413, 429, 502, 503, 504, 529),
    "/v1/embeddings": (400, 401, 403, 404, 413, 429, 502, 503, 504),
    "/v1/messages/count_tokens": (400, 401, 403, 404, 413, 502, 503, 504, 529),
    "/v1/responses": (400, 401, 403, 404, 413, 429, 502, 503, 504),
    "/v1/responses/{response_id}": (400, 401, 404, 503),
    "/v1/responses/{response_id}/input_items": (400, 401, 404, 503),
}
"""Paths of the model plane and the statuses they answer besides success; ``/admin/*`` answers ``_ADMIN``."""


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """The OpenAI error shape every error answer has (but on the Anthropic paths)."""

    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorBody(BaseModel):
    """Anthropic's error shape, on ``/v1/messages*``: an Anthropic upstream's own error body is relayed as it came."""

    type: str
    error: AnthropicErrorDetail


ANTHROPIC_PATHS = ("/v1/messages",)
_ANTHROPIC_STATUS = {529: "overloaded_error: the Anthropic upstream is overloaded (its own body, relayed)"}


_SECURITY_SCHEMES = {
    "AgentKey": {"type": "http", "scheme": "bearer",
                 "description": "The agent's key; also accepted as an x-api-key or api-key header."},
    "AdminKey": {"type": "http", "scheme": "bearer", "description": "AGENT_ROUTER_ADMIN_KEY."},
    "AdminKeyHeader": {"type": "apiKey", "in": "header", "name": "x-admin-key",
                       "description": "AGENT_ROUTER_ADMIN_KEY, for clients that cannot send a bearer token."},
}


def install_error_docs(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that adds the error answers, the error schema and the key schemes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes)
            app.openapi_schema = document_errors(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Add to ``spec`` (FastAPI's page) each path's error answers, which are all ``ErrorBody``, and its key."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    anthropic_schema = AnthropicErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(anthropic_schema.pop("$defs", {}))
    schemas["AnthropicErrorBody"] = anthropic_schema
    components["securitySchemes"] = _SECURITY_SCHEMES
    for path, operations in spec.get("paths", {}).items():
        admin = path.startswith("/admin/")
        anthropic = path.startswith(ANTHROPIC_PATHS)
        described = {**_AGENT, **_ANTHROPIC_STATUS}
        statuses = _ADMIN if admin else {status: described[status] for status in ERRORS_BY_PATH.get(path, ())}
        body = "AnthropicErrorBody" if anthropic else "ErrorBody"
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in statuses.items():
                entry = responses.setdefault(str(status), {"description": description})
                entry.setdefault("content", {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{body}"}}})
            if path == "/readyz":
                responses.setdefault("503", {"description": "not ready: the same body, with status unavailable"})
            if admin:
                operation["security"] = [{"AdminKey": []}, {"AdminKeyHeader": []}]
            elif statuses:
                operation["security"] = [{"AgentKey": []}]
    for name in ("HTTPValidationError", "ValidationError"):
        if not any(name in str(operations) for operations in spec.get("paths", {}).values()):
            schemas.pop(name, None)
    return spec
