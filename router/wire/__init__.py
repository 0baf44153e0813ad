"""Wire formats at the edges: one :class:`~router.wire.codec.Codec` per format the router speaks to callers.

``codec_for(name)`` is the registry: stages that must read a request or an answer in the caller's format ask it
for the codec named by ``ctx.wire``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.wire.codec import Codec

CHAT = "chat"
MESSAGES = "messages"
RESPONSES = "responses"
EMBEDDINGS = "embeddings"
WIRES = (CHAT, MESSAGES, RESPONSES, EMBEDDINGS)
"""Formats the router serves (``embeddings`` has no tools and no streams, but the same walk)."""

_CODECS: dict[str, Codec] = {}


def codec_for(name: str) -> Codec:
    """The codec of wire ``name`` (built on first use: codecs import the stages, which import this module)."""
    codec = _CODECS.get(name)
    if codec is None:
        if name == CHAT:
            from router.wire.chat import ChatCodec
            codec = ChatCodec()
        elif name == MESSAGES:
            from router.wire.messages import MessagesCodec
            codec = MessagesCodec()
        elif name == RESPONSES:
            from router.wire.responses import ResponsesCodec
            codec = ResponsesCodec()
        elif name == EMBEDDINGS:
            from router.wire.embeddings import EmbeddingsCodec
            codec = EmbeddingsCodec()
        else:
            raise KeyError(f"no codec for wire format {name!r}")
        _CODECS[name] = codec
    return codec
