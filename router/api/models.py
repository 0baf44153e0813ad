"""``GET /v1/models``: the public model names the caller's role may request, in OpenAI's list shape, or in
Anthropic's (``{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more", "first_id",
"last_id"}``) when the caller sends ``anthropic-version`` (Claude Code's gateway model discovery does)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from router.errors import ModelNotFound
from router.state import RouterState

api = APIRouter(tags=["models"])


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agent-router"}


async def visible_models(request: Request) -> list[str]:
    """Only the models the caller's role may request (authenticates the caller: 401 without a key)."""
    state: RouterState = request.app.state.router
    return await state.identity.models_for(request.headers, state.snapshot)


EPOCH = "1970-01-01T00:00:00Z"


def _anthropic_entry(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": EPOCH}


def _anthropic_client(request: Request) -> bool:
    return "anthropic-version" in request.headers


@api.get("/v1/models", summary="List the models the caller may request")
async def list_models(request: Request) -> JSONResponse:
    names = await visible_models(request)
    if not _anthropic_client(request):
        return JSONResponse({"object": "list", "data": [_model_entry(name) for name in names]})
    limit = _limit(request.query_params.get("limit"))
    after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
    if after in names:
        names = names[names.index(after) + 1:]
    if before in names:
        names = names[:names.index(before)]
    page = names[:limit]
    return JSONResponse({"data": [_anthropic_entry(name) for name in page], "has_more": len(names) > len(page),
                         "first_id": page[0] if page else None, "last_id": page[-1] if page else None})


def _limit(text: str | None) -> int:
    """Anthropic's ``limit`` (default 20, 1 to 1000); Claude Code asks for 1000."""
    if text is None or not text.isdigit():
        return 20
    return min(max(int(text), 1), 1000)


@api.get("/v1/models/{model:path}", summary="Describe one model")
async def get_model(model: str, request: Request) -> JSONResponse:
    if model not in await visible_models(request):
        raise ModelNotFound(f"the model {model!r} does not exist", param="model")
    return JSONResponse(_anthropic_entry(model) if _anthropic_client(request) else _model_entry(model))
