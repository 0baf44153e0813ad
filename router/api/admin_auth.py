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
    if not presents_admin_key(request, expected):
        raise AuthenticationFailed("a valid admin key is required for /admin endpoints")
    return state


def presents_admin_key(request: Request, expected: str | None) -> bool:
    """Whether the request carries the admin key (``Authorization: Bearer`` or ``x-admin-key``); never when the
    router has none. Compared in constant time."""
    if not expected:
        return False
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
    named = request.headers.get("x-admin-key", "").strip()
    given = bearer or named
    if not given or (bearer and named and bearer != named):
        return False  # two different admin keys: refused, whichever is right
    return hmac.compare_digest(given.encode(), expected.encode())
