"""``/admin/freeze``: the kill switch over HTTP: freeze an agent or a role, lift it, list what is frozen."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request

from router.api.admin_auth import require_admin
from router.errors import IdentityUnavailable, InvalidRequest, NotFound
from router.freezes import store
from router.freezes.store import Kind
from router.state import RouterState
from router.store.counters import CountersUnavailable
from router.store.database import DatabaseUnavailable

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

BY = "admin-api"


def _target(agent: object, role: object) -> tuple[Kind, str]:
    """Exactly one of ``agent`` and ``role``, a non-empty string."""
    if (agent is None) == (role is None):
        raise InvalidRequest("give exactly one of agent and role", param="agent")
    kind: Kind = "agent" if agent is not None else "role"
    name = agent if agent is not None else role
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"{kind} must be a non-empty string", param=kind)
    return kind, name.strip()


@api.get("/freeze", summary="List the frozen agents and roles")
async def list_freezes(state: RouterState = Depends(require_admin)) -> Any:
    try:
        rows = await state.database.run(store.list_freezes, state.database)
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the freeze store cannot be read: {exc}") from None
    return {"object": "list", "data": [row.public() for row in rows], "view": state.freezes.health()["freezes"]}


@api.post("/freeze", summary="Freeze an agent or a role: every key of it is refused at once, on both planes")
async def freeze(request: Request, state: RouterState = Depends(require_admin)) -> Any:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body must be JSON: {\"agent\": ...} or {\"role\": ...}, and \"reason\"") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(body) - {"agent", "role", "reason"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    kind, name = _target(body.get("agent"), body.get("role"))
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequest("reason must be a string", param="reason")
    try:
        row, new, published = await state.freezes.freeze(kind, name, reason, BY)
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the freeze store cannot be written; NOT frozen: {exc}") from None
    return {**row.public(), "frozen": True, "new": new, "published_to_redis": published}


@api.delete("/freeze", summary="Lift the freeze of an agent or a role")
async def unfreeze(agent: str | None = None, role: str | None = None,
                   state: RouterState = Depends(require_admin)) -> Any:
    kind, name = _target(agent, role)
    try:
        row = await state.freezes.unfreeze(kind, name, BY)
    except CountersUnavailable as exc:
        raise IdentityUnavailable(f"the shared freeze store (Redis) cannot be written; still frozen: {exc}") from None
    except DatabaseUnavailable as exc:
        raise IdentityUnavailable(f"the freeze store cannot be written; still frozen: {exc}") from None
    if row is None:
        raise NotFound(f"{kind} {name!r} is not frozen", code="not_frozen")
    return {**row.public(), "frozen": False}
