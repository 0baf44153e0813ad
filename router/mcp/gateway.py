"""The tool plane's front door: ``/mcp/<server>`` and ``/mcp`` over Streamable HTTP, behind the agent's own key.

For every HTTP request: find the endpoint (an unknown server, or one the role may not reach, is a 404 that
tells nothing about what exists); authenticate the key with the model plane's identity stage; keep a session
on the endpoint and key that opened it; refuse a body that repeats a JSON key (parsers disagree on which one
wins, and the policy must decide on what the server will read); then hand the request to the SDK's session
manager, which speaks the protocol (initialize, ``Mcp-Session-Id``, JSON or SSE answers, notifications,
server-to-client requests, cancellation) and calls :mod:`router.mcp.handlers`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any

import mcp.types as types
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata

from router.api.asgi_io import header_map
from router.api.request_id import new_request_id
from router.config.mcp_schema import McpCredential
from router.errors import RouterError
from router.mcp.caller import SCOPE_KEY, McpCaller, new_context
from router.mcp.handlers import Handlers
from router.mcp.policy import mcp_policy_for
from router.mcp.records import ToolCallRecord
from router.mcp.sessions import AgentSession, GatewaySessionManager, SessionRegistry
from router.mcp.upstream import PoolKey, UpstreamHooks, UpstreamPool, spec_digest
from router.policy.decide import repeats_a_key

if TYPE_CHECKING:
    from router.state import RouterState

log = logging.getLogger("agent_router.mcp")

PREFIX = "/mcp"
SESSION_HEADER = "mcp-session-id"
Scope = MutableMapping[str, Any]


def endpoint_of(path: str) -> str | None:
    """``""`` for ``/mcp``, the server name for ``/mcp/<server>``, None for anything else."""
    if path in (PREFIX, PREFIX + "/"):
        return ""
    if path.startswith(PREFIX + "/"):
        rest = path[len(PREFIX) + 1:].rstrip("/")
        return rest if rest and "/" not in rest else None
    return None


async def json_rpc_error(send: Any, status: int, code: int, message: str, headers: dict[str, str] | None = None
                         ) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class McpGateway:
    def __init__(self, state: RouterState) -> None:
        self.state = state
        from router.app import telemetry_on  # here: the app imports this module's starter

        settings = state.settings
        self.pool = UpstreamPool(self._is_current)
        self.registry = SessionRegistry(self.pool.close_owner)
        self.handlers = Handlers(self)
        self.manager = GatewaySessionManager(
            self.handlers.server(telemetry_on(settings)), json_response=settings.mcp_json_response,
            session_idle_timeout=settings.mcp_session_idle_seconds, max_sessions=settings.mcp_max_sessions,
            max_request_body_size=settings.mcp_max_request_bytes)
        self.manager.registry = self.registry
        self._running = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.pool.running(), self.manager.run():
            self._running = True
            try:
                yield
            finally:
                self._running = False
                for owner in self.registry.owners():
                    await self.registry.ended(owner)

    def _is_current(self, key: PoolKey) -> bool:
        _, server, digest, credential_name = key
        spec = self.state.snapshot.spec.mcp_servers.get(server)
        if spec is None:
            return False
        credential = spec.credentials.get(credential_name) if credential_name else McpCredential()
        return credential is not None and spec_digest(spec, credential) == digest

    # -- what handlers use --------------------------------------------------------------------------------------
    def new_request_id(self) -> str:
        return new_request_id().decode()

    def record(self, record: ToolCallRecord, events: list[dict[str, Any]]) -> None:
        try:
            self.state.ledger.record_tool_call(record, events)
        except Exception:
            log.exception("mcp: the record of a tool call could not be queued")

    def session_for(self, caller: McpCaller) -> AgentSession:
        owner = caller.session_header or f"stateless:{caller.key_id}:{caller.endpoint}"
        return self.registry.open(owner, caller.endpoint, caller.agent, caller.key_id)

    def hooks_for(self, session: AgentSession) -> UpstreamHooks:
        """Relays from an upstream server to this agent session: its requests go to the call in flight (or the
        session's own stream), its notifications to the session."""

        def target() -> tuple[Any, Any]:
            call = session.latest_call()
            if call is not None:
                return call.session, ServerMessageMetadata(related_request_id=call.request_id)
            return session.server_session, None

        async def ask(request: Any, result_type: Any) -> Any:
            server_session, metadata = target()
            if server_session is None:
                return types.ErrorData(code=types.INVALID_REQUEST, message="agent-router: the agent session has no "
                                       "open channel for this request")
            try:
                return await server_session.send_request(request, result_type, metadata=metadata)
            except MCPError as exc:
                return exc.error
            except Exception as exc:
                return types.ErrorData(code=types.INTERNAL_ERROR, message=f"agent-router: the agent could not be "
                                       f"asked ({type(exc).__name__})")

        async def elicit(params: Any) -> Any:
            return await ask(types.ElicitRequest(params=params), types.ElicitResult)

        async def sample(params: Any) -> Any:
            return await ask(types.CreateMessageRequest(params=params), types.CreateMessageResult)

        async def list_roots() -> Any:
            return await ask(types.ListRootsRequest(), types.ListRootsResult)

        async def notify(server: str, notification: Any) -> None:
            if session.server_session is None:
                return
            if isinstance(notification, (types.ToolListChangedNotification, types.ResourceListChangedNotification,
                                         types.PromptListChangedNotification, types.ResourceUpdatedNotification)):
                await session.server_session.send_notification(notification)

        return UpstreamHooks(elicit=elicit, sample=sample, list_roots=list_roots, notify=notify)

    # -- ASGI ---------------------------------------------------------------------------------------------------
    async def __call__(self, path: str, scope: Scope, receive: Any, send: Any) -> None:
        endpoint = endpoint_of(path)
        if endpoint is None or scope["type"] != "http":
            await json_rpc_error(send, 404, types.INVALID_REQUEST, "not an MCP endpoint: use /mcp or /mcp/<server>")
            return
        if not self._running:
            await json_rpc_error(send, 503, types.INTERNAL_ERROR, "the MCP gateway is not running")
            return
        headers = header_map(scope["headers"])
        client = scope.get("client")
        ctx = new_context(self.state, headers, client[0] if client else None)
        try:
            await self.state.identity.authenticate(headers, ctx)
        except RouterError as exc:
            self._audit_refusal(ctx)
            extra = {"www-authenticate": 'Bearer realm="agent-router"'} if exc.status == 401 else {}
            await json_rpc_error(send, exc.status, types.INVALID_REQUEST, exc.message, extra)
            return
        assert ctx.agent is not None and ctx.role is not None and ctx.key_id is not None
        snapshot = self.state.snapshot
        policy = mcp_policy_for(snapshot, ctx.role)
        if endpoint and (endpoint not in snapshot.spec.mcp_servers or not policy.may_reach(endpoint)):
            await json_rpc_error(send, 404, types.INVALID_REQUEST, f"no MCP server '{endpoint[:64]}' for this agent")
            return
        session_id = headers.get(SESSION_HEADER)
        if session_id is not None:
            known = self.registry.get(session_id)
            if known is not None and (known.endpoint != endpoint or known.key_id != ctx.key_id):
                await json_rpc_error(send, 404, types.INVALID_REQUEST, "Session not found")
                return
        if scope["method"] == "POST":
            body = await self._read_body(receive, self.state.settings.mcp_max_request_bytes)
            if body is None:
                await json_rpc_error(send, 413, types.INVALID_REQUEST, "the request body is too large")
                return
            if b'"' in body and repeats_a_key(body.decode("utf-8", "replace")):
                await json_rpc_error(send, 400, types.INVALID_REQUEST, "the JSON body repeats a key: parsers "
                                     "disagree on which one wins, so it is refused")
                return
            cap = self.state.settings.mcp_max_sessions_per_agent
            if session_id is None and b'"initialize"' in body and self.registry.open_for(ctx.agent) >= cap:
                await json_rpc_error(send, 429, types.INVALID_REQUEST, f"this agent has {cap} open MCP sessions, "
                                     "its limit: end some (DELETE) or let them idle out")
                return
            receive = _replay(body, receive)
        caller = McpCaller(ctx.agent, ctx.role, ctx.key_id, endpoint, ctx.client, session_id)
        scope[SCOPE_KEY] = caller
        scope["user"] = AuthenticatedUser(AccessToken(token=ctx.key_id, client_id=ctx.agent, scopes=[ctx.role],
                                                      subject=ctx.key_id))
        await self.manager.handle_request(scope, receive, self._watch_session(caller, send))

    def _watch_session(self, caller: McpCaller, send: Any) -> Any:
        """Note the session a response opens, with its endpoint and key."""
        if caller.session_header is not None:
            return send

        async def watched(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if name.lower() == b"mcp-session-id":
                        self.registry.open(value.decode("latin-1"), caller.endpoint, caller.agent, caller.key_id)
            await send(message)

        return watched

    @staticmethod
    async def _read_body(receive: Any, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _audit_refusal(self, ctx: Any) -> None:
        with contextlib.suppress(Exception):
            self.state.ledger.record(ctx, "refused")


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay
