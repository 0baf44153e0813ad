"""Agent sessions of the tool plane: which endpoint and key opened each, and what the gateway keeps for it.

The SDK's session manager owns the protocol side of a session (its transport, ``Mcp-Session-Id``, the idle
timeout, and refusing another credential's requests). The gateway keeps, beside it, the endpoint the session
was opened on (a session of ``/mcp/github`` is not one of ``/mcp``), the server session to send notifications
through, the requests in flight (so a server's elicitation reaches the call that caused it) and where the
aggregated endpoint's resources come from. When the manager discards a session, the gateway closes that
session's upstream connections.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server.session import ServerSession
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger("agent_router.mcp")

MAX_RESOURCE_ROUTES = 10_000
"""Resource URIs remembered per session for the aggregated endpoint (bounded: a server may list many)."""


@dataclass
class AgentSession:
    owner: str
    """The ``Mcp-Session-Id``, or ``stateless:<key>:<endpoint>`` for requests outside a session."""
    endpoint: str
    agent: str
    key_id: str
    server_session: ServerSession | None = None
    calls: dict[Any, Any] = field(default_factory=dict)
    """Request id -> the handler context of each tools/call in flight."""
    resource_servers: dict[str, str] = field(default_factory=dict)
    """Aggregated endpoint: resource URI -> the server that listed it."""

    def latest_call(self) -> Any:
        return next(reversed(self.calls.values()), None) if self.calls else None

    def remember_resource(self, uri: str, server: str) -> None:
        if len(self.resource_servers) >= MAX_RESOURCE_ROUTES:
            self.resource_servers.pop(next(iter(self.resource_servers)))
        self.resource_servers[uri] = server


class SessionRegistry:
    def __init__(self, on_end: Callable[[str], Awaitable[None]]) -> None:
        self._sessions: dict[str, AgentSession] = {}
        self._per_agent: dict[str, int] = {}
        self._on_end = on_end

    def get(self, owner: str) -> AgentSession | None:
        return self._sessions.get(owner)

    def open(self, owner: str, endpoint: str, agent: str, key_id: str) -> AgentSession:
        session = self._sessions.get(owner)
        if session is None:
            session = self._sessions[owner] = AgentSession(owner, endpoint, agent, key_id)
            self._per_agent[agent] = self._per_agent.get(agent, 0) + 1
        return session

    def open_for(self, agent: str) -> int:
        """How many sessions the agent holds (so one agent cannot take every session of the process)."""
        return self._per_agent.get(agent, 0)

    async def ended(self, owner: str) -> None:
        session = self._sessions.pop(owner, None)
        if session is not None:
            left = self._per_agent.get(session.agent, 1) - 1
            if left > 0:
                self._per_agent[session.agent] = left
            else:
                self._per_agent.pop(session.agent, None)
            await self._on_end(owner)

    def owners(self) -> list[str]:
        return list(self._sessions)


class GatewaySessionManager(StreamableHTTPSessionManager):
    """The SDK's manager, told to report each session it discards (client DELETE, idle timeout, crash).

    The SDK offers no hook for the end of a session; this overrides its one place where every session ends
    (``_discard_session``, mcp 2.3), which is why the dependency is bounded to one minor version."""

    registry: SessionRegistry | None = None

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        await super()._discard_session(session_id, transport)
        if self.registry is not None:
            try:
                await self.registry.ended(session_id)
            except Exception:
                log.exception("mcp: closing the upstream connections of a session failed")
