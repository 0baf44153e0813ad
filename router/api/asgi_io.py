"""The few ASGI pieces the chat endpoint speaks directly: read headers and body, send a response or a stream.

The chat endpoint bypasses Starlette's Request/Response and FastAPI's middleware stack (about 15% of the CPU of a
request, measured under the benchmark); these helpers are all it needs instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from router.errors import InvalidRequest, PayloadTooLarge, RouterError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = (b"content-type", b"application/json")
EVENT_STREAM = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]


class ClientGone(Exception):
    """The client disconnected (before its request was read, or mid-stream): nobody is left to answer."""


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request headers as a dict with lower-case names (ASGI gives them so); a repeated header keeps its last
    value, which is all the stages need (keys, metadata, content-length)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` (declared or streamed in chunks)."""
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("content-length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        if not message.get("more_body"):
            return b"".join((*chunks, chunk)) if chunks else chunk  # usually one message: no copy
        chunks.append(chunk)


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: RouterError, ids: list[tuple[bytes, bytes]]) -> None:
    """An OpenAI-style error body with the error's status and headers (``retry-after`` for 429/503), after the
    request's id headers ``ids``."""
    headers = [JSON, *ids]
    headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in exc.headers().items())
    await send_bytes(send, exc.status, orjson.dumps(exc.to_body()), headers)


class DisconnectWatch:
    """While a stream is relayed, cancel the relaying task as soon as the client disconnects.

    Under ASGI 2.3 (uvicorn) ``send`` to a gone client returns silently, so only ``receive`` tells; without this a
    stream would keep reading (and paying for) the upstream's answer nobody reads.
    """

    def __init__(self, receive: Receive) -> None:
        self._task = asyncio.current_task()
        self._receive = receive
        self._watch: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._until_disconnect())
        self.disconnected = False

    async def _until_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if self._task is not None:
            self.disconnected = True
            self._task.cancel()

    def stop(self) -> None:
        """Before the last send: the end of the response also wakes ``receive``, which must not cancel us."""
        self._task = None
        self._watch.cancel()
