"""litellm's embeddings answer (as a plain dict) in OpenAI's exact ``CreateEmbeddingResponse`` shape.

Providers differ in what they take: some have no ``encoding_format``. So the router never sends it through
litellm: vectors come back as floats and are packed here when the caller asked for ``base64`` (little-endian
float32, as OpenAI sends them). Pure; no litellm import.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from router.errors import UpstreamServerError

HELD_BACK = frozenset({"stream", "encoding_format"})
"""Request fields not handed to ``litellm.aembedding`` (see the module docstring)."""


def openai_embeddings(data: dict[str, Any], model: str, as_base64: bool, where: str) -> dict[str, Any]:
    """``model_dump()`` of litellm's ``EmbeddingResponse`` as OpenAI's shape; UpstreamServerError when it holds
    no vectors."""
    items = data.get("data")
    if not isinstance(items, list):
        raise UpstreamServerError(f"{where} answered embeddings without a data list")
    out = []
    for position, item in enumerate(items):
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list) and as_base64:
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        elif not isinstance(vector, list | str):
            raise UpstreamServerError(f"{where} answered an embedding without a vector")
        index = item.get("index")
        out.append({"object": "embedding", "index": index if type(index) is int else position, "embedding": vector})
    answer: dict[str, Any] = {"object": "list", "data": out, "model": data.get("model") or model}
    usage = data.get("usage")
    if isinstance(usage, dict) and type(usage.get("prompt_tokens")) is int:
        prompt = usage["prompt_tokens"]
        answer["usage"] = {"prompt_tokens": prompt, "total_tokens": usage.get("total_tokens") or prompt}
    return answer
