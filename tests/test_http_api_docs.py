"""The OpenAPI page tells a client (or a fuzzer) every answer a path gives: its error statuses with the OpenAI
error body, how it is authenticated; a 405 names every method the path serves; the admin key headers are the
documented ones."""

from __future__ import annotations

from typing import Any

import pytest

from tests.configs import openai_config

ADMIN_KEY = "admin-secret"
MODEL_PLANE = {"/v1/chat/completions": {400, 401, 403, 404, 413, 429, 502, 503, 504},
               "/v1/models": {401, 503}, "/v1/models/{model}": {401, 404, 503},
               "/v1/route/explain": {400, 401, 403, 404, 413, 503}}


@pytest.fixture
def router(upstream: Any, start_router: Any) -> Any:
    return start_router(openai_config(upstream.openai_base_url), admin_key=ADMIN_KEY)


@pytest.fixture
def spec(router: Any) -> dict[str, Any]:
    with router.http() as http:
        answer = http.get("/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def _error_statuses(operation: dict[str, Any]) -> set[int]:
    statuses = set()
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (status, schema)
            statuses.add(int(status))
    return statuses


def test_the_openapi_page_lists_each_paths_error_answers(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    for path, statuses in MODEL_PLANE.items():
        for operation in paths[path].values():
            assert _error_statuses(operation) == statuses, path
            assert operation["security"] == [{"AgentKey": []}]
    admin = [(path, op) for path, ops in paths.items() if path.startswith("/admin/") for op in ops.values()]
    assert len(admin) >= 5
    for path, operation in admin:
        assert {400, 401, 404, 503} <= _error_statuses(operation), path
        assert {"AdminKey": []} in operation["security"] and {"AdminKeyHeader": []} in operation["security"]
    assert "422" not in str(paths)  # validation failures are answered 400, as documented
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    scheme = spec["components"]["securitySchemes"]["AdminKeyHeader"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-admin-key")


def test_a_405_names_every_method_the_path_serves(router: Any, spec: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with router.http() as http:
        for path, operations in spec["paths"].items():
            served = {method.upper() for method in operations}
            url = path.replace("{model}", "fast").replace("{ref}", "no-such-key")
            answer = http.request("PATCH", url, headers=headers)
            assert answer.status_code == 405, (path, answer.text)
            assert set(answer.headers["allow"].split(", ")) == served, path
            assert answer.json()["error"]["type"] == "invalid_request_error"


def test_the_admin_key_is_taken_from_either_documented_header_never_from_two_different_ones(router: Any) -> None:
    with router.http() as http:
        assert http.get("/admin/limits", headers={"x-admin-key": ADMIN_KEY}).status_code == 200
        assert http.get("/admin/limits", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        both = {"authorization": f"Bearer {ADMIN_KEY}", "x-admin-key": "something-else"}
        refused = http.get("/admin/limits", headers=both)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert http.get("/admin/limits", headers={"x-admin-key": "wrong"}).status_code == 401
