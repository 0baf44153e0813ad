"""Streaming side: a small state machine fed one chunk payload at a time. (Stub.)"""

from __future__ import annotations

from router.context import RequestContext


class StreamFilter:
    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx

    def feed(self, payload: bytes) -> list[bytes]:
        """Take one chunk payload (JSON bytes); return the payloads to send on, in order."""
        return [payload]

    def finish(self) -> list[bytes]:
        """The stream ended: return anything held back (or a final error/summary chunk)."""
        return []


def needs_stream_filter(ctx: RequestContext) -> bool:
    """False when nothing in this stream can need filtering, so bytes are relayed untouched."""
    return False
