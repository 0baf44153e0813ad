"""``/admin/keys``: list, create (the key is returned once) and revoke agent API keys."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from router.api.admin_auth import require_admin
from router.errors import IdentityUnavailable, InvalidRequest, NotFound
from router.identity import config_key_id
from router.keys import store
from router.keys.checks import KeyRequestError, role_for_new_key
from router.keys.material import parse_expiry, to_text
from router.state import RouterState
from router.store.database import DatabaseUnavailable

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def config_key_entries(state: RouterState, agent: str | None) -> list[dict[str, Any]]:
    """The keys the config gives by hash, in the same shape as stored keys (no prefix: only the hash is known)."""
    entries = []
    for name, spec in state.snapshot.agents.items():
        if agent is not None and name != agent:
            continue
        for number, key in enumerate(spec.keys):
            entries.append({"source": "config", "id": config_key_id(name, key.name, number), "prefix": None,
                            "agent": name, "role": spec.role, "effective_role": spec.role, "name": key.name,
                            "created_at": None, "expires_at": to_text(key.expires), "revoked_at": None})
    return entries


@api.get("/keys", summary="List API keys (never the keys themselves)")
async def list_keys(agent: str | None = None, state: RouterState = Depends(require_admin)) -> Any:
    try:
        rows = await state.database.run(store.list_keys, state.database, agent)
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the key store cannot be read: {exc}") from None
    agents = state.snapshot.agents
    stored = [{**row.public(), "effective_role": agents[row.agent].role if row.agent in agents else row.role}
              for row in rows]
    return {"object": "list", "data": config_key_entries(state, agent) + stored}


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
