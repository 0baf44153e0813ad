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
WIRES = (CHAT, MESSAGES, RESPONSES)
"""Formats the router serves."""

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
        else:
            raise KeyError(f"no codec for wire format {name!r}")
        _CODECS[name] = codec
    return codec
