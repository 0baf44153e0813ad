"""The admin API's guard: the key ``AGENT_ROUTER_ADMIN_KEY``, sent as ``Authorization: Bearer <key>`` or as an
``x-admin-key`` header (both documented, on the OpenAPI page too); two different keys are refused, never one of
them picked. The admin API is off (404) without a key."""

from __future__ import annotations

import hmac

from fastapi import Request

from router.errors import AuthenticationFailed, NotFound
from router.state import RouterState


async def require_admin(request: Request) -> RouterState:
    """FastAPI dependency for every ``/admin/*`` route; returns the router state."""
    state: RouterState = request.app.state.router
    expected = state.settings.admin_key
    if not expected:
        raise NotFound("the admin API is disabled: set AGENT_ROUTER_ADMIN_KEY to enable it")
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
    named = request.headers.get("x-admin-key", "").strip()
    given = bearer or named
    if not given or (bearer and named and bearer != named) \
            or not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthenticationFailed("a valid admin key is required for /admin endpoints")
    return state
