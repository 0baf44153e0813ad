"""The MCP gateway, started on demand: importing the MCP SDK costs about half a second and 15 MB, which a router
serving only the model plane should not pay at start.

It starts in the background as the app starts when the config lists MCP servers, else on the first ``/mcp``
request (a reload may add servers later); it stops with the app, closing every session and upstream process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.mcp.gateway import McpGateway
    from router.state import RouterState

log = logging.getLogger("agent_router.mcp")

STOP_TIMEOUT = 10.0


async def _unavailable(send: Any) -> None:
    body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the MCP gateway could not start"}}'
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("mcp: the gateway could not start (%s); the next /mcp request tries again",
                  type(task.exception()).__name__)


class LazyGateway:
    def __init__(self, state: RouterState) -> None:
        self.state = state
        self._gateway: McpGateway | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[Any] | None = None

    def warm(self) -> None:
        """Start now, in the background, when the config has MCP servers."""
        if self.state.snapshot.spec.mcp_servers:
            self._warming = asyncio.get_running_loop().create_task(self._started())
            self._warming.add_done_callback(_log_failure)

    async def __call__(self, path: str, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        try:
            gateway = self._gateway or await self._started()
        except Exception:
            log.exception("mcp: the gateway could not start")
            await _unavailable(send)
            return
        await gateway(path, scope, receive, send)

    async def _started(self) -> McpGateway:
        async with self._lock:
            if self._gateway is not None:
                return self._gateway
            from router.mcp.gateway import McpGateway  # here: the MCP SDK loads only when the gateway is used

            gateway = McpGateway(self.state)
            ready = asyncio.Event()

            async def serve() -> None:
                async with gateway.running():
                    ready.set()
                    await self._stop.wait()

            task = asyncio.get_running_loop().create_task(serve())
            waiting = asyncio.get_running_loop().create_task(ready.wait())
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if task.done():
                task.result()  # raises why it could not start
                raise RuntimeError("the MCP gateway stopped as it started")
            self._task, self._gateway = task, gateway
            return gateway

    async def close(self) -> None:
        """Stop serving: close every agent session, upstream connection and stdio process."""
        if self._warming is not None and not self._warming.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._warming, STOP_TIMEOUT)
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, STOP_TIMEOUT)
            except (TimeoutError, Exception):
                log.warning("mcp: the gateway did not stop cleanly within %gs", STOP_TIMEOUT)
        self._gateway = None
