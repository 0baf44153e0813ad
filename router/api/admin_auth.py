"""The admin API's guard: a bearer key from ``AGENT_ROUTER_ADMIN_KEY``; the admin API is off without one."""

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
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-admin-key", "")
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())
