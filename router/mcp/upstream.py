"""Connections from the router to upstream MCP servers, opened with the role's own credential.

One :class:`UpstreamConnection` is one MCP client session (the official SDK's ``ClientSession``) over
Streamable HTTP or stdio. Each runs in its own task of the pool's task group, because the SDK's transports are
context managers that must be entered and left by the same task, and must outlive the request that opened them.

The :class:`UpstreamPool` keys connections by owner (an agent session, or ``shared`` for a stdio process every
session of a credential shares), server, the server's config and the credential entry: a reload that changes a
server's config or a role's credential opens a new connection for the next call; the old one idles out. A
connection whose transport died is dropped at once, so the next call starts a fresh one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp.types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage

from router import __version__
from router.config.mcp_schema import McpCredential, McpServerSpec
from router.redact import Redactor

log = logging.getLogger("agent_router.mcp")

CLIENT_INFO = types.Implementation(name="agent-router", version=__version__)
REAP_INTERVAL = 5.0
SSE_EVENT_SLACK = 64 * 1024
"""An SSE event carries one JSON-RPC message: a result of ``max_result_bytes`` plus its envelope (the SDK's own
bound is 1 MiB, below the results a server may legitimately send)."""
MAX_TOOLS = 10_000
"""Tools kept from one server's listing (a server that lists more is cut, and logged)."""

Streams = tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]
TransportFactory = Callable[[McpServerSpec, McpCredential], AbstractAsyncContextManager[Streams]]


class UpstreamTooLarge(Exception):
    """An answer declared larger than the server's result cap: refused before its body is read."""


class UpstreamUnavailable(Exception):
    """The server could not be reached, did not initialize in time, or its connection ended."""


@dataclass
class UpstreamHooks:
    """How the server's own messages reach the agent: server-to-client requests (elicitation, sampling, roots)
    and notifications. The gateway binds one per agent session; a shared connection has none (its requests are
    declined: several agents' sessions share it, and none of them may answer for another)."""

    elicit: Callable[[types.ElicitRequestParams], Awaitable[types.ElicitResult | types.ErrorData]] | None = None
    sample: Callable[[types.CreateMessageRequestParams], Awaitable[Any]] | None = None
    list_roots: Callable[[], Awaitable[types.ListRootsResult | types.ErrorData]] | None = None
    notify: Callable[[str, types.ServerNotification], Awaitable[None]] | None = None
    """Called with the server's name and the notification (list changes, resource updates)."""


_NO_BACK_CHANNEL = types.ErrorData(code=types.INVALID_REQUEST, message="agent-router: no agent session can answer "
                                   "this request (the connection is shared, or the agent's client does not offer it)")


def spec_digest(spec: McpServerSpec, credential: McpCredential) -> str:
    """Identifies a server's config and credential without holding either (used in pool keys and logs)."""
    body = spec.model_dump_json() + credential.model_dump_json()
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One TLS context (the system's trust store, as httpx builds it) for every upstream client: building one
    per upstream session cost about 20 ms each."""
    return httpx2.create_ssl_context()


@contextlib.asynccontextmanager
async def http_transport(spec: McpServerSpec, credential: McpCredential) -> AsyncIterator[Streams]:
    """Streamable HTTP with the server's headers and the role's: the SDK's client transport on our httpx client."""
    assert spec.url is not None
    headers = {**spec.headers, **credential.headers}
    timeout = httpx2.Timeout(spec.timeout, connect=spec.connect_timeout)
    limit = spec.max_result_bytes + SSE_EVENT_SLACK

    async def bounded(response: httpx2.Response) -> None:
        """A JSON answer (not SSE) is read whole by the SDK: refuse a declared length above the result cap."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise UpstreamTooLarge(f"the server's answer is {declared} bytes, above {limit}")

    async with (httpx2.AsyncClient(headers=headers, timeout=timeout, follow_redirects=False,
                                   verify=_tls_context(), event_hooks={"response": [bounded]}) as client,
                streamable_http_client(spec.url, http_client=client,
                                       max_sse_event_size=limit) as streams):
        yield streams


@contextlib.asynccontextmanager
async def stdio_transport_for(spec: McpServerSpec, credential: McpCredential) -> AsyncIterator[Streams]:
    """The router's own stdio transport: the process gets exactly the configured environment."""
    from router.mcp.stdio_transport import stdio_transport  # here: only stdio servers need it

    assert spec.command is not None
    env = {**spec.env, **credential.env}
    async with stdio_transport(spec.command, spec.args, env=env, cwd=spec.cwd) as streams:
        yield streams[0], streams[1]


def transport_for(spec: McpServerSpec, credential: McpCredential) -> AbstractAsyncContextManager[Streams]:
    return http_transport(spec, credential) if spec.transport == "http" else stdio_transport_for(spec, credential)


@dataclass(eq=False)
class UpstreamConnection:
    server: str
    spec: McpServerSpec
    credential_name: str
    credential: McpCredential = field(repr=False)
    hooks: UpstreamHooks
    session: ClientSession | None = None
    initialize: types.InitializeResult | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    dead: bool = False
    ended_why: str | None = None
    """Why the connection ended, when it failed after it was ready (for the agent's error)."""
    tools: list[types.Tool] | None = None
    secrets: Redactor = field(default_factory=Redactor, repr=False)
    """The credential's own values: masked in whatever the server sends back to the agent."""
    """The server's tools as last listed (every page), until it says its list changed."""
    _done: anyio.Event = field(default_factory=anyio.Event)
    _closed: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        values = [*self.credential.headers.values(), *self.credential.env.values(), *self.spec.headers.values(),
                  *self.spec.env.values()]
        self.secrets = Redactor([*values, *(value.partition(" ")[2] for value in values)])

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the transport and the session, initialize, report ready; keep both until closed or dead.

        A failure before it is ready is the caller's (``start`` raises it); after, it only ends this connection:
        raised into the pool's task group, it would end every other connection with it."""
        ready = False
        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(transport_for(self.spec, self.credential))
                session = ClientSession(
                    read, write, read_timeout_seconds=self.spec.timeout, client_info=CLIENT_INFO,
                    elicitation_callback=self._elicit, sampling_callback=self._sample,
                    list_roots_callback=self._roots, message_handler=self._message)
                self.session = await stack.enter_async_context(session)
                with anyio.fail_after(self.spec.connect_timeout):
                    self.initialize = await session.initialize()
                task_status.started()
                ready = True
                await self._closed.wait()
        except Exception as exc:
            if not ready:
                raise
            self.ended_why = describe(exc)
            log.warning("mcp: the connection to server %s ended: %s", self.server, self.ended_why)
        finally:
            self.dead = True
            self._done.set()

    async def ended(self) -> None:
        """Wait until the connection's task has ended."""
        await self._done.wait()

    async def close(self) -> None:
        self._closed.set()
        with anyio.move_on_after(5.0, shield=True):
            await self._done.wait()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    async def _elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        if self.hooks.elicit is None:
            return _NO_BACK_CHANNEL
        return await self.hooks.elicit(params)

    async def _sample(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        if self.hooks.sample is None:
            return _NO_BACK_CHANNEL
        return await self.hooks.sample(params)

    async def _roots(self, context: Any) -> types.ListRootsResult | types.ErrorData:
        if self.hooks.list_roots is None:
            return _NO_BACK_CHANNEL
        return await self.hooks.list_roots()

    async def _message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            log.debug("mcp: server %s: transport reported %s", self.server, type(message).__name__)
            return
        if isinstance(message, (types.ToolListChangedNotification,)):
            self.tools = None
        if self.hooks.notify is not None:
            with contextlib.suppress(Exception):
                await self.hooks.notify(self.server, message)


PoolKey = tuple[str, str, str, str]
"""(owner, server, spec digest, credential name)."""


class UpstreamPool:
    """Every open upstream connection, by owner; closes idle ones and everything at shutdown."""

    def __init__(self, is_current: Callable[[PoolKey], bool] | None = None) -> None:
        self.is_current = is_current
        """Whether a key still matches the config in force: a connection to a server whose config or credential a
        reload changed is closed as soon as no call is in flight, not after its idle time."""
        self._connections: dict[PoolKey, UpstreamConnection] = {}
        self._opening: dict[PoolKey, anyio.Event] = {}
        self._group: TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[UpstreamPool]:
        async with anyio.create_task_group() as group:
            self._group = group
            group.start_soon(self._reap_idle)
            try:
                yield self
            finally:
                await self.close_all()
                group.cancel_scope.cancel()
                self._group = None

    def open_count(self) -> int:
        return sum(not conn.dead for conn in self._connections.values())

    async def connection(self, owner: str, server: str, spec: McpServerSpec, credential: tuple[str, McpCredential],
                         hooks: UpstreamHooks) -> UpstreamConnection:
        """The live connection for this owner, server and credential; opened (bounded by the server's
        ``connect_timeout``) when there is none. Raises :class:`UpstreamUnavailable`."""
        name, cred = credential
        key = (owner, server, spec_digest(spec, cred), name)
        while True:
            conn = self._connections.get(key)
            if conn is not None and not conn.dead:
                conn.touch()
                return conn
            opening = self._opening.get(key)
            if opening is None:
                break
            await opening.wait()
        self._opening[key] = event = anyio.Event()
        try:
            conn = UpstreamConnection(server, spec, name, cred, hooks)
            if self._group is None:
                raise UpstreamUnavailable("the MCP gateway is not running")
            try:
                with anyio.fail_after(spec.connect_timeout + 1.0):
                    await self._group.start(conn.run)
            except TimeoutError:
                await conn.close()
                raise UpstreamUnavailable(f"MCP server '{server}' did not initialize within "
                                          f"{spec.connect_timeout:g}s") from None
            except Exception as exc:
                raise UpstreamUnavailable(f"MCP server '{server}' could not be reached "
                                          f"({describe(exc)})") from None
            self._connections[key] = conn
            return conn
        finally:
            self._opening.pop(key, None)
            event.set()

    def drop(self, conn: UpstreamConnection) -> None:
        """Forget a connection that failed (its task ends on its own, or on close)."""
        for key, value in list(self._connections.items()):
            if value is conn:
                del self._connections[key]
        if self._group is not None:
            self._group.start_soon(conn.close)

    async def close_owner(self, owner: str) -> None:
        """The agent session ended: close its connections (shared ones stay)."""
        doomed = [key for key in self._connections if key[0] == owner]
        for key in doomed:
            await self._connections.pop(key).close()

    async def close_all(self) -> None:
        conns, self._connections = list(self._connections.values()), {}
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as group:
                for conn in conns:
                    group.start_soon(conn.close)

    async def _reap_idle(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL)
            try:
                await self._reap_once()
            except Exception:  # never let one bad pass end the pool's task group (and every connection)
                log.exception("mcp: closing idle upstream connections failed")

    async def _reap_once(self) -> None:
        now = time.monotonic()
        for key, conn in list(self._connections.items()):
            stale = self.is_current is not None and not self.is_current(key)
            if conn.dead or (conn.in_flight == 0 and (stale or now - conn.last_used > conn.spec.idle_seconds)):
                self._connections.pop(key, None)
                await conn.close()


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport failure (never the request or its headers)."""
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return describe(inner)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
