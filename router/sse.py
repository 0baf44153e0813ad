"""Server-sent event framing for OpenAI-style streams."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def json_event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
