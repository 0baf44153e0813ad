"""Split a server-sent event stream into the ``data`` of each event, in linear time and bounded memory.

A read is split in one pass; the part of an event still waiting for its end is kept in one buffer, and the
search for the blank line that ends it starts where the last one stopped, so a large event arriving in many
small reads costs its size about twice, not once per read; an event (or the bytes waiting for one to end)
larger than ``max_event_bytes`` is refused. ``\\r\\n`` line ends are accepted. Until the first event with data,
every line must be an SSE field or a comment: anything else (an HTML page, a JSON body) means the upstream is
not sending an event stream at all.
"""

from __future__ import annotations

_FIELDS = (b"data", b"event", b"id", b"retry")


class EventTooLarge(Exception):
    """An event, or the bytes still waiting for its end, passed ``max_event_bytes``."""


class NotAnEventStream(Exception):
    """The stream began with something that is not SSE."""


class SSESplitter:
    __slots__ = ("_buffer", "_cr", "_max", "_scan", "_seen_data")

    def __init__(self, max_event_bytes: int) -> None:
        self._buffer = bytearray()
        self._scan = 0  # no event boundary starts before this offset
        self._max = max_event_bytes
        self._cr = False  # the last piece ended with "\r": its "\n" may be in the next one
        self._seen_data = False

    def feed(self, piece: bytes) -> list[bytes]:
        """The data of every event this piece completed, in order (comments and data-less events skipped)."""
        if self._cr:
            piece = b"\r" + piece
            self._cr = False
        if b"\r" in piece:
            if piece.endswith(b"\r"):
                piece, self._cr = piece[:-1], True
            piece = piece.replace(b"\r\n", b"\n")
        buffer = self._buffer
        if buffer:  # part of an event waits: look for its end only in what is new
            buffer += piece
            if buffer.find(b"\n\n", self._scan) < 0:
                if len(buffer) > self._max:
                    raise EventTooLarge(f"more than {self._max} bytes without an event boundary")
                self._scan = len(buffer) - 1
                return []
            piece = bytes(buffer)
            buffer.clear()
        *events, rest = piece.split(b"\n\n")
        if rest:
            if len(rest) > self._max:
                raise EventTooLarge(f"more than {self._max} bytes without an event boundary")
            buffer += rest
            self._scan = len(rest) - 1
        found: list[bytes] = []
        limit = self._max
        for event in events:
            if len(event) > limit:
                raise EventTooLarge(f"an event of more than {limit} bytes")
            if event.startswith(b"data: ") and b"\n" not in event:
                found.append(event[6:])
                self._seen_data = True
            else:
                payload = self._data(event)
                if payload is not None:
                    found.append(payload)
        return found

    def finish(self) -> list[bytes]:
        """The data of a last event the stream ended without a blank line after."""
        rest = bytes(self._buffer).strip()
        self._buffer.clear()
        if not rest:
            return []
        payload = self._data(rest)
        return [] if payload is None else [payload]

    def _data(self, event: bytes) -> bytes | None:
        if event.startswith(b"data: ") and b"\n" not in event:
            self._seen_data = True
            return event[6:]
        parts: list[bytes] = []
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                parts.append(value[1:] if value.startswith(b" ") else value)
            elif not self._seen_data and line and not line.startswith(b":") \
                    and line.split(b":", 1)[0] not in _FIELDS:
                raise NotAnEventStream(f"a line that is not an SSE field: {line[:60]!r}")
        if not parts:
            return None
        self._seen_data = True
        return b"\n".join(parts)
