"""Server-sent event framing for OpenAI-style streams."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def events(payloads: list[bytes]) -> bytes:
    """Several events in one piece of bytes, so that they reach the client in one write."""
    if len(payloads) == 1:
        return b"data: " + payloads[0] + b"\n\n"
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n"


def json_event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
