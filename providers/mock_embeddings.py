"""The mock provider's embeddings: deterministic unit vectors from a hash of each input, no model at all.

Same input (and model and size), same vector, so tests and demos can compare them; different inputs give
unrelated vectors. ``dimensions`` is honoured (default :data:`DEFAULT_DIMENSIONS`), ``encoding_format: base64``
gives little-endian float32 bytes as OpenAI does, and usage counts a token per word (per id for token inputs).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

import orjson

from router.errors import UpstreamBadRequest

DEFAULT_DIMENSIONS = 16
MAX_DIMENSIONS = 4096


def mock_embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``CreateEmbeddingResponse`` for ``body``."""
    model = str(body.get("model", "mock"))
    dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
    if type(dimensions) is not int or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise UpstreamBadRequest(f"dimensions must be an integer from 1 to {MAX_DIMENSIONS}")
    as_base64 = body.get("encoding_format") == "base64"
    data, tokens = [], 0
    for index, item in enumerate(_inputs(body.get("input"))):
        vector = _vector(model, item, dimensions)
        embedding: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens += len(item) if isinstance(item, list) else max(1, len(item.split()))
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _inputs(value: Any) -> list[str | list[int]]:
    """The inputs one vector each: a string, strings, one token list, or token lists."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise UpstreamBadRequest("input must be a string or a non-empty array")
    if all(isinstance(item, int) for item in value):
        return [value]
    return [item for item in value if isinstance(item, str | list)]


def _vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    seed = hashlib.sha256(model.encode() + b"\0" + (item.encode() if isinstance(item, str) else orjson.dumps(item)))
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(seed.digest() + block.to_bytes(4, "little")).digest()
        raw.extend(value / 32768.0 - 1.0 for value in struct.unpack("<16H", digest))
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [value / norm for value in raw]
