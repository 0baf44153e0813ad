"""Who is calling the tool plane: the agent, its role and key, resolved by the model plane's own identity stage.

The gateway authenticates every HTTP request (not only a session's first), so a revoked key or a changed role
takes effect on the next message of an open session. The caller travels to the MCP handlers in the ASGI scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.api.request_id import new_request_id
from router.context import RequestContext

if TYPE_CHECKING:
    from router.state import RouterState


SCOPE_KEY = "agent_router.mcp_caller"


@dataclass(frozen=True, slots=True)
class McpCaller:
    agent: str
    role: str
    key_id: str
    endpoint: str
    """The server name of ``/mcp/<server>``, or ``""`` for the aggregated ``/mcp``."""
    client: str | None
    session_header: str | None
    """The ``Mcp-Session-Id`` the request carried (None on the request that opens a session)."""


def new_context(state: RouterState, headers: Mapping[str, str], client: str | None) -> RequestContext:
    """A request context for the identity stage (and its audit events): no model, no body."""
    return RequestContext(request_id=new_request_id().decode(), snapshot=state.snapshot, payload={}, stream=False,
                          requested_model="", headers=dict(headers), client=client, wire="mcp")


def caller_of(request: Any) -> McpCaller:
    """The caller the gateway's ASGI entry put in the scope; a request without one was not authenticated, and
    nothing may be decided for it (fail closed)."""
    scope = getattr(request, "scope", None)
    caller = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    if not isinstance(caller, McpCaller):
        raise PermissionError("the MCP request carries no authenticated caller")
    return caller
