"""The tool plane's MCP server: one SDK ``Server`` whose handlers apply the role's policy and relay to upstreams.

The same handlers serve ``/mcp/<server>`` (one upstream, names as the server gives them) and ``/mcp`` (every
server the role may reach, names qualified ``<server>__<name>``). Each handler reads the config in force at
that moment, so a reload changes decisions on open sessions at once. What a role may not reach is never listed
and never forwarded; resources and prompts follow server access.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError

from router import __version__
from router.config.mcp_schema import McpServerSpec
from router.config.snapshot import Snapshot
from router.errors import PolicyViolation
from router.mcp import names
from router.mcp.caller import McpCaller, caller_of
from router.mcp.policy import McpPolicy, decide_tool, mcp_policy_for
from router.mcp.sessions import AgentSession
from router.mcp.tool_call import (
    Verdict,
    arguments_text,
    audit_event,
    audit_events,
    build_record,
    decide_call,
    forward,
    refusal_result,
    take_limits,
)
from router.mcp.upstream import MAX_TOOLS, UpstreamConnection, UpstreamHooks, UpstreamUnavailable
from router.redact import LOG_FILTER

if TYPE_CHECKING:
    from router.mcp.gateway import McpGateway

log = logging.getLogger("agent_router.mcp")

MAX_LIST_PAGES = 50
"""Pages of an upstream listing followed before the rest is left out (a server that pages forever)."""
Ctx = ServerRequestContext[Any, Any]
T = TypeVar("T")


class Handlers:
    def __init__(self, gateway: McpGateway) -> None:
        self.gateway = gateway

    # -- who, where ---------------------------------------------------------------------------------------------
    def _context(self, ctx: Ctx) -> tuple[McpCaller, Snapshot, McpPolicy, AgentSession]:
        caller = caller_of(ctx.request)
        snapshot = self.gateway.state.snapshot
        try:
            policy = mcp_policy_for(snapshot, caller.role)
        except PolicyViolation as exc:
            raise MCPError(types.INTERNAL_ERROR, exc.message) from None
        session = self.gateway.session_for(caller)
        if ctx.session is not None and session.server_session is None and caller.session_header is not None:
            session.server_session = ctx.session
        return caller, snapshot, policy, session

    def _servers(self, caller: McpCaller, snapshot: Snapshot, policy: McpPolicy) -> list[str]:
        if caller.endpoint:
            return [caller.endpoint] if self._reachable(snapshot, policy, caller.endpoint) else []
        return [name for name in snapshot.spec.mcp_servers if self._reachable(snapshot, policy, name)]

    @staticmethod
    def _reachable(snapshot: Snapshot, policy: McpPolicy, server: str) -> bool:
        spec = snapshot.spec.mcp_servers.get(server)
        return spec is not None and policy.may_reach(server) and spec.credential_for(policy.role) is not None

    async def _connection(self, session: AgentSession, policy: McpPolicy, snapshot: Snapshot,
                          server: str) -> UpstreamConnection:
        spec = snapshot.spec.mcp_servers.get(server)
        credential = spec.credential_for(policy.role) if spec is not None else None
        if spec is None or credential is None:
            raise UpstreamUnavailable(f"MCP server '{server}' is not available to this role")
        shared = spec.transport == "stdio" and spec.process == "shared"
        owner = "shared" if shared else session.owner
        hooks = UpstreamHooks() if shared else self.gateway.hooks_for(session)
        return await self.gateway.pool.connection(owner, server, spec, credential, hooks)

    async def _each_server(self, ctx: Ctx, fetch: Callable[[str, UpstreamConnection], Awaitable[list[T]]]) -> list[T]:
        """Run ``fetch`` on every server of the endpoint; on ``/mcp`` a server that fails is left out (logged),
        on ``/mcp/<server>`` its failure is the answer."""
        caller, snapshot, policy, session = self._context(ctx)
        found: list[T] = []
        for server in self._servers(caller, snapshot, policy):
            try:
                conn = await self._connection(session, policy, snapshot, server)
                found += await fetch(server, conn)
            except (UpstreamUnavailable, MCPError) as exc:
                if caller.endpoint:
                    raise _as_mcp_error(exc) from None
                log.warning("mcp: /mcp leaves out server %s: %s", server, _message(exc))
        return found

    # -- tools --------------------------------------------------------------------------------------------------
    async def _tools_of(self, conn: UpstreamConnection, fresh: bool = False) -> list[types.Tool]:
        """The server's tools: as last listed, or listed again (``fresh``: what the agent's own tools/list asks,
        since a server need not announce changes)."""
        if conn.tools is None or fresh:
            assert conn.session is not None
            tools: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                page = await conn.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor)
                                                     if cursor else None)
                tools += page.tools
                cursor = page.next_cursor
                if not cursor or len(tools) >= MAX_TOOLS:
                    break
            if len(tools) > MAX_TOOLS or cursor:
                log.warning("mcp: server %s lists more than %d tools or %d pages; the rest are hidden",
                            conn.server, MAX_TOOLS, MAX_LIST_PAGES)
            conn.tools = tools[:MAX_TOOLS]
        return conn.tools

    async def list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        _, _, policy, _ = self._context(ctx)
        aggregated = not caller_of(ctx.request).endpoint

        async def visible(server: str, conn: UpstreamConnection) -> list[types.Tool]:
            shown = []
            for tool in await self._tools_of(conn, fresh=True):
                if decide_tool(policy, server, tool.name).allowed:
                    shown.append(tool.model_copy(update={"name": names.join(server, tool.name)}) if aggregated
                                 else tool)
            return shown

        return types.ListToolsResult(tools=await self._each_server(ctx, visible))

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        caller, snapshot, policy, session = self._context(ctx)
        started = time.perf_counter()
        request_id = self.gateway.new_request_id()
        server, tool = self._resolve(caller, params.name)
        spec = snapshot.spec.mcp_servers.get(server) if server else None
        arguments = arguments_text(params.arguments)
        credential: str | None = None
        conn: UpstreamConnection | None = None
        verdict: Verdict
        if spec is not None and policy.may_reach(server) and spec.credential_for(policy.role) is None:
            verdict = Verdict("denied", "no-credential", f"MCP server '{server}' has no credential for role "
                                                         f"'{policy.role}'")
        elif spec is None or not self._reachable(snapshot, policy, server):
            verdict = Verdict("denied", "server-not-allowed",
                              f"no MCP server '{server or params.name}' is available to role '{policy.role}'")
        else:
            try:
                conn = await self._connection(session, policy, snapshot, server)
                credential = conn.credential_name
                listed = any(t.name == tool for t in await self._tools_of(conn))
                if not listed and conn.tools is not None:  # listed since? once, then decided
                    listed = any(t.name == tool for t in await self._tools_of(conn, fresh=True))
                verdict = decide_call(policy, server, tool, listed, arguments)
            except (UpstreamUnavailable, MCPError) as exc:
                verdict = Verdict("unavailable", "upstream-unavailable", _message(exc))
            if verdict.sends:
                verdict = await take_limits(self.gateway.state.counters, policy, caller.agent, server, tool) or verdict
        outcome, error, size = "refused", None, 0
        result = refusal_result(server or "?", tool, verdict)
        try:
            if verdict.sends and conn is not None and spec is not None:
                session.calls[ctx.request_id] = ctx
                try:
                    sent = await forward(conn, spec, tool, params.arguments, self._progress_relay(ctx))
                finally:
                    session.calls.pop(ctx.request_id, None)
                if conn.dead:
                    self.gateway.pool.drop(conn)
                result, outcome, error, size = sent.result, sent.outcome, sent.error, sent.result_bytes
            return result
        except anyio.get_cancelled_exc_class():
            outcome, error = "cancelled", "the agent cancelled the call"
            raise
        finally:
            record = build_record(
                request_id=request_id, session=caller.session_header, agent=caller.agent, role=caller.role,
                server=server or "?", method="tools/call", tool=tool, arguments=params.arguments, spec=spec,
                verdict=verdict, outcome=outcome, error=error, started=started, result_bytes=size,
                credential=credential, policy_version=policy.version)
            self.gateway.record(record, audit_events(record, verdict))

    def _resolve(self, caller: McpCaller, name: str) -> tuple[str, str]:
        if caller.endpoint:
            return caller.endpoint, name
        parts = names.split(name)
        return parts if parts is not None else ("", name)

    @staticmethod
    def _progress_relay(ctx: Ctx) -> Any:
        meta = ctx.meta if isinstance(ctx.meta, dict) else {}
        raw = meta.get("progress_token", meta.get("progressToken"))
        token: str | int | None = raw if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
        if token is None:
            return None

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            try:
                await ctx.session.send_progress_notification(token, progress, total, message,
                                                             related_request_id=str(ctx.request_id))
            except Exception:
                log.debug("mcp: a progress notification could not be relayed")

        return relay

    # -- resources and prompts: governed by server access ------------------------------------------------------
    async def list_resources(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        caller, _, _, session = self._context(ctx)

        async def fetch(server: str, conn: UpstreamConnection) -> list[types.Resource]:
            assert conn.session is not None
            found = (await conn.session.list_resources()).resources
            if not caller.endpoint:
                for resource in found:
                    session.remember_resource(str(resource.uri), server)
            return found

        return types.ListResourcesResult(resources=await self._each_server(ctx, fetch))

    async def list_resource_templates(self, ctx: Ctx, params: types.PaginatedRequestParams | None
                                      ) -> types.ListResourceTemplatesResult:
        async def fetch(server: str, conn: UpstreamConnection) -> list[types.ResourceTemplate]:
            assert conn.session is not None
            return (await conn.session.list_resource_templates()).resource_templates

        return types.ListResourceTemplatesResult(resource_templates=await self._each_server(ctx, fetch))

    async def read_resource(self, ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        caller, snapshot, policy, session = self._context(ctx)
        uri = str(params.uri)
        server = caller.endpoint or session.resource_servers.get(uri, "")
        started = time.perf_counter()
        if not server or not self._reachable(snapshot, policy, server):
            self._record_other(caller, policy, server or "?", "resources/read", uri, started,
                               Verdict("denied", "server-not-allowed", "the resource is not available to this role"))
            raise MCPError(types.INVALID_PARAMS, f"resource {uri[:200]!r} is not available (list resources first on "
                                                 "/mcp)")
        try:
            conn = await self._connection(session, policy, snapshot, server)
            assert conn.session is not None
            result = await conn.session.read_resource(uri)
        except (UpstreamUnavailable, MCPError) as exc:
            self._record_other(caller, policy, server, "resources/read", uri, started,
                               Verdict("allowed", None, "server access"), outcome="upstream_error")
            raise _as_mcp_error(exc) from None
        self._record_other(caller, policy, server, "resources/read", uri, started,
                           Verdict("allowed", None, "server access"))
        return result

    async def list_prompts(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        aggregated = not caller_of(ctx.request).endpoint

        async def fetch(server: str, conn: UpstreamConnection) -> list[types.Prompt]:
            assert conn.session is not None
            found = (await conn.session.list_prompts()).prompts
            return [p.model_copy(update={"name": names.join(server, p.name)}) for p in found] if aggregated else found

        return types.ListPromptsResult(prompts=await self._each_server(ctx, fetch))

    async def get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        caller, snapshot, policy, session = self._context(ctx)
        server, name = self._resolve(caller, params.name)
        started = time.perf_counter()
        if not server or not self._reachable(snapshot, policy, server):
            self._record_other(caller, policy, server or "?", "prompts/get", params.name, started,
                               Verdict("denied", "server-not-allowed", "the prompt is not available to this role"))
            raise MCPError(types.INVALID_PARAMS, f"prompt {params.name[:200]!r} is not available")
        try:
            conn = await self._connection(session, policy, snapshot, server)
            assert conn.session is not None
            result = await conn.session.get_prompt(name, params.arguments)
        except (UpstreamUnavailable, MCPError) as exc:
            raise _as_mcp_error(exc) from None
        self._record_other(caller, policy, server, "prompts/get", name, started,
                           Verdict("allowed", None, "server access"))
        return result

    def _record_other(self, caller: McpCaller, policy: McpPolicy, server: str, method: str, name: str,
                      started: float, verdict: Verdict, outcome: str | None = None) -> None:
        spec: McpServerSpec | None = self.gateway.state.snapshot.spec.mcp_servers.get(server)
        record = build_record(
            request_id=self.gateway.new_request_id(), session=caller.session_header, agent=caller.agent,
            role=caller.role, server=server, method=method, tool=name, arguments=None, spec=spec, verdict=verdict,
            outcome=outcome or ("ok" if verdict.sends else "refused"), error=None, started=started, result_bytes=0,
            credential=None, policy_version=policy.version)
        self.gateway.record(record, [audit_event(record)])

    # -- the server ---------------------------------------------------------------------------------------------
    def server(self, telemetry: bool) -> Server[Any]:
        """The SDK server; its OpenTelemetry span per message only when the router's telemetry is on (it is the
        SDK's default, and costs a few per cent of a call even with no exporter)."""
        server = RelayingServer(
            "agent-router", version=__version__,
            instructions="agent-router MCP gateway: the tools, resources and prompts your role may use.",
            on_list_tools=self.list_tools, on_call_tool=self.call_tool,
            on_list_resources=self.list_resources, on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource, on_list_prompts=self.list_prompts, on_get_prompt=self.get_prompt)
        if not telemetry:
            server.middleware = []
        return server


class RelayingServer(Server[Any]):
    """Advertises ``listChanged`` for tools, resources and prompts: the gateway relays the upstreams' changes."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      experimental_capabilities: dict[str, dict[str, Any]] | None = None,
                                      extensions: dict[str, dict[str, Any]] | None = None) -> InitializationOptions:
        relayed = notification_options or NotificationOptions(prompts_changed=True, resources_changed=True,
                                                              tools_changed=True)
        return super().create_initialization_options(relayed, experimental_capabilities, extensions)


def _message(exc: BaseException) -> str:
    """A failure's text for the agent and the record: short, with every configured secret masked."""
    text = exc.message[:500] if isinstance(exc, MCPError) else str(exc)[:500]
    return LOG_FILTER.redactor(text)  # the running config's redactor: its MCP credentials included


def _as_mcp_error(exc: BaseException) -> MCPError:
    if isinstance(exc, MCPError):
        return exc
    return MCPError(types.INTERNAL_ERROR, _message(exc))
