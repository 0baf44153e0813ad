"""The fake upstream's ``POST /v1/embeddings``: OpenAI's embeddings answer, float or base64, over real HTTP.

A vector is a pure function of the upstream model and the input (so a test can tell which deployment answered
and check a vector end to end: :func:`fake_vector`). The behaviours queued for a model work as on chat: the
failures (``Error``, ``Hang``, ``Garbage``...) fail the same way, ``Scripted(answer=...)`` is answered word for
word, and ``Text(usage=...)`` sets the prompt tokens reported (its first count; ``usage=None`` reports none).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.fakes.behaviours import Scripted, Text

if TYPE_CHECKING:
    from tests.fakes.upstream import FakeUpstream

DEFAULT_DIMENSIONS = 8


def fake_vector(model: str, item: str | list[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """Floats exactly representable in float32, so base64 round trips compare equal."""
    seed = model.encode() + b"\0" + (item.encode() if isinstance(item, str) else orjson.dumps(item))
    digest = hashlib.sha256(seed).digest() * (dimensions // 32 + 1)
    return [(byte - 128) / 128 for byte in digest[:dimensions]]


def embeddings_answer(body: dict[str, Any], prompt_tokens: int | None) -> dict[str, Any]:
    model = str(body.get("model", ""))
    value = body.get("input")
    if not isinstance(value, list):
        value = [value]
    items: list[Any] = [value] if isinstance(value[0], int) else value
    dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
    data = []
    for index, item in enumerate(items):
        vector: Any = fake_vector(model, item, dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    answer: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if prompt_tokens is not None:
        answer["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return answer


def embeddings_handler(upstream: FakeUpstream) -> Any:
    """The aiohttp handler, bound to ``upstream`` (its queues and its record of what it received)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await upstream._record(request)
        behaviour = upstream._next(str(body.get("model", "")))
        failure = await upstream._common_failures(behaviour, request)
        if failure is not None:
            return failure
        if isinstance(behaviour, Scripted):
            raw = behaviour.answer if isinstance(behaviour.answer, bytes) else orjson.dumps(behaviour.answer)
            return web.Response(status=200, body=raw, content_type="application/json")
        usage = behaviour.usage if isinstance(behaviour, Text) else (11, 0)
        answer = embeddings_answer(body, usage[0] if usage is not None else None)
        return web.Response(status=200, body=orjson.dumps(answer), content_type="application/json")

    return handle
