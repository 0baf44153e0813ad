"""Give every response an ``x-request-id``: the caller's own when it sent a sane one, else a new one."""

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


def request_id_for(sent: str | bytes | None) -> bytes:
    """The caller's ``x-request-id`` when it is sane (so traces join up across hops), else a new one."""
    if sent:
        value = sent.encode("latin-1") if isinstance(sent, str) else sent
        if _SAFE_ID.fullmatch(value):
            return value
    return new_request_id()


class RequestIdMiddleware:
    """For every route but the chat path (which sets its own id): plain ASGI, no BaseHTTPMiddleware."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        request_id = request_id_for(sent)
        scope.setdefault("state", {})["request_id"] = request_id.decode()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
