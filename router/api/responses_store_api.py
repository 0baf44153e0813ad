"""Stored responses over HTTP: ``GET`` and ``DELETE /v1/responses/{id}`` and ``GET .../input_items``.

Authenticated by the agent key exactly like the model paths; an agent sees only the responses it was served:
another agent's id answers 404, like an unknown one. Errors are OpenAI-shaped (the app's error handlers).
"""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.request_id import new_request_id
from router.context import RequestContext
from router.errors import NotFound
from router.response_store import StoredResponse
from router.response_store.listing import input_items_page
from router.state import RouterState

api = APIRouter(tags=["responses"])


async def _caller(request: Request) -> tuple[RouterState, str | None]:
    """The router state and the authenticated agent (401 without a valid key)."""
    state: RouterState = request.app.state.router
    headers = {name: value for name, value in request.headers.items()}
    ctx = RequestContext(request_id=new_request_id().decode(), snapshot=state.snapshot, payload={}, stream=False,
                         requested_model="", wire="responses")
    await state.identity.authenticate(headers, ctx)
    return state, ctx.agent


async def _stored(request: Request, response_id: str) -> tuple[RouterState, StoredResponse]:
    state, agent = await _caller(request)
    stored = await state.responses.get(response_id, agent)
    if stored is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return state, stored


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@api.get("/v1/responses/{response_id}", summary="Retrieve a stored response (as it was sent)")
async def retrieve_response(response_id: str, request: Request) -> Response:
    _, stored = await _stored(request, response_id)
    return _json(stored.response)


@api.delete("/v1/responses/{response_id}", summary="Delete a stored response")
async def delete_response(response_id: str, request: Request) -> Response:
    state, agent = await _caller(request)
    if not await state.responses.delete(response_id, agent):
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return _json({"id": response_id, "object": "response", "deleted": True})


@api.get("/v1/responses/{response_id}/input_items", summary="List the input items of a stored response")
async def list_input_items(response_id: str, request: Request, limit: int = 20,
                           order: Literal["asc", "desc"] = "desc", after: str | None = None) -> Response:
    _, stored = await _stored(request, response_id)
    return _json(input_items_page(stored, limit, order, after))
