"""``/admin/keys``: list, create (the key is returned once) and revoke agent API keys."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from router.api.admin_auth import require_admin
from router.errors import IdentityUnavailable, InvalidRequest, NotFound
from router.keys import store
from router.keys.checks import KeyRequestError, role_for_new_key
from router.keys.listing import key_entries
from router.keys.material import parse_expiry
from router.state import RouterState
from router.store.database import DatabaseUnavailable

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@api.get("/keys", summary="List API keys (never the keys themselves)")
async def list_keys(agent: str | None = None, state: RouterState = Depends(require_admin)) -> Any:
    try:
        rows = await state.database.run(store.list_keys, state.database, agent)
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the key store cannot be read: {exc}") from None
    return {"object": "list", "data": key_entries(state.snapshot, rows, agent)}


def _text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    return value


@api.post("/keys", status_code=201, summary="Create an API key; the response is the only time it is shown")
async def create_key(request: Request, state: RouterState = Depends(require_admin)) -> Any:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body must be JSON: {\"agent\": ..., \"role\": ..., \"expires\": ..., "
                             "\"name\": ...}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(body) - {"agent", "role", "expires", "name"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    agent, role, name = _text_field(body, "agent"), _text_field(body, "role"), _text_field(body, "name")
    expires_text = _text_field(body, "expires")
    if not agent:
        raise InvalidRequest("agent is required", param="agent")
    try:
        role, warnings = role_for_new_key(state.snapshot, agent, role)
        expires = parse_expiry(expires_text) if expires_text else None
    except (KeyRequestError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None
    try:
        key, row = await state.identity.create_key(agent, role, name, expires)
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the key store cannot be written: {exc}") from None
    return JSONResponse(status_code=201, content={**row.public(), "key": key, "warnings": warnings})


@api.delete("/keys/{ref}", summary="Revoke an API key (by id, id prefix or display prefix)")
async def revoke_key(ref: str, state: RouterState = Depends(require_admin)) -> Any:
    if ref.startswith("config:"):
        raise InvalidRequest("keys from the config are withdrawn by removing them from the config and reloading",
                             param="id")
    try:
        row, published = await state.identity.revoke_key(ref)
    except store.KeyNotFound as exc:
        raise NotFound(str(exc), code="key_not_found") from None
    except store.AmbiguousKey as exc:
        raise InvalidRequest(str(exc), param="id") from None
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the key store cannot be written; the key is NOT revoked: {exc}") from None
    return {**row.public(), "revoked": True, "published_to_redis": published}
