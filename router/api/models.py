"""``GET /v1/models``: the public model names, in OpenAI's list shape."""

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


@api.get("/v1/models", summary="List the models the caller may request")
async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [_model_entry(name) for name in await visible_models(request)]})


@api.get("/v1/models/{model:path}", summary="Describe one model")
async def get_model(model: str, request: Request) -> JSONResponse:
    if model not in await visible_models(request):
        raise ModelNotFound(f"the model {model!r} does not exist", param="model")
    return JSONResponse(_model_entry(model))
