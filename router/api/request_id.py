"""Request ids: the router mints its own for every request (records are keyed by it, error messages name it,
``x-agent-router-request-id`` returns it); the caller's sane ``x-request-id`` is kept beside it for correlation
and echoed back in ``x-request-id`` (else that header carries the router's id too).

A client-chosen id never keys a record: two agents sending the same id get two separate requests."""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

_SAFE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
# A random per-process prefix and a counter: 32 hex digits like uuid4().hex, unique across replicas in practice.
# No syscall per request (os.urandom / uuid4 release the GIL, and getting it back can wait behind another thread).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_request_id() -> bytes:
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}".encode()


def client_request_id(sent: str | bytes | None) -> bytes | None:
    """The caller's ``x-request-id`` when it is sane (so traces join up across hops), else None."""
    if sent:
        value = sent.encode("latin-1", "replace") if isinstance(sent, str) else sent
        if _SAFE_ID.fullmatch(value):
            return value
    return None


def id_headers(own: bytes, client: bytes | None) -> list[tuple[bytes, bytes]]:
    """The response's id headers: the caller's id echoed (else ours), and ours always."""
    return [(b"x-request-id", client or own), (b"x-agent-router-request-id", own)]


class RequestIdMiddleware:
    """For every route but the chat path (which sets its own id): plain ASGI, no BaseHTTPMiddleware."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        request_id, client = new_request_id(), client_request_id(sent)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode()
        state["client_request_id"] = client.decode() if client else None
        extra = id_headers(request_id, client)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(extra)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
