"""One keep-alive HTTP/1.1 client connection: an asyncio Protocol feeding httptools' response parser.

The connection carries one exchange at a time. Its owner (:mod:`providers.http1`) writes a request, then waits
for the headers, for body pieces or for the whole answer; callbacks from the parser only record state and wake
that one waiter, so a read costs no task switch beyond the one the waiter needs. A connection is reusable only
when its last response was complete, the parser said keep-alive, the version was 1.1 and nothing was left
unsent or unexpected; anything else ends it.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from providers.http1 import HTTP1Pool


class HTTP1Error(Exception):
    """Base of the client's errors; timeouts are raised as the built-in ``TimeoutError``."""


class ConnectionBroken(HTTP1Error):
    """The connection failed, was refused, reset or closed before the response was complete."""

    before_response = False
    """True when not one byte of a response had arrived: a reused idle connection the server had closed."""


class InvalidResponse(HTTP1Error):
    """The upstream answered with bytes that are not a valid HTTP/1.x response."""


# What a waiter waits for. Completion and errors satisfy every level.
WANT_HEADERS, WANT_PIECE, WANT_END = 1, 2, 3

HIGH_WATER = 256 * 1024
"""Buffered body bytes at which reading pauses until the consumer catches up (streams only)."""

MAX_HEAD = 256 * 1024
"""Status line and headers larger than this are not an answer but an upstream gone wrong."""

_DECODERS = {b"gzip": 31, b"x-gzip": 31, b"deflate": 15}


class Connection(asyncio.Protocol):
    """One connection and the state of its current exchange (reset by :meth:`send`)."""

    def __init__(self, pool: HTTP1Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False  # has served at least one exchange
        self.idle_since = 0.0
        self.draining = False  # the consumer left after the logical end; reuse once the message completes
        self.in_idle = False
        self.counted = False  # connection_made ran: connection_lost will free the pool slot
        self._begin_exchange(streaming=False)

    def _begin_exchange(self, streaming: bool) -> None:
        self.active = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.pieces: list[bytes] = []
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.got_bytes = False
        self.streaming = streaming
        self.paused = False
        self._informational = False
        self._decoder: zlib._Decompress | None = None
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._last_io = 0.0
        self._head_size = 0

    # -- driven by the pool ----------------------------------------------------------------------
    def send(self, data: bytes | list[bytes], streaming: bool, deadline: float | None,
             read_timeout: float | None) -> bool:
        """Start an exchange; False when the transport is already closing (a stale idle connection)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        self._begin_exchange(streaming)
        self.active = True
        if read_timeout is not None:
            self._read_timeout = read_timeout
            self._last_io = self.loop.time()
            self._timer = self.loop.call_at(self._last_io + read_timeout, self._on_timer)
        elif deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)
        if type(data) is bytes:
            transport.write(data)
        else:
            transport.writelines(data)
        return True

    async def wait(self, want: int) -> None:
        """Wait until the exchange reached ``want`` (or ended); raise its error, if any, once nothing is left
        to hand over."""
        if not self._satisfied(want):
            self._want = want
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
                self._want = 0
        if self.error is not None and not (want == WANT_PIECE and self.pieces):
            raise self.error

    def take(self) -> bytes:
        """Everything buffered so far, as one piece; resumes reading if it was paused."""
        pieces = self.pieces
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self._last_io = self.loop.time()
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        transport = self.transport
        return (self.complete and self.keep_alive and self.error is None and not self.closed
                and transport is not None and not transport.is_closing()
                and transport.get_write_buffer_size() == 0)

    def finish_exchange(self) -> None:
        """The exchange is over: stop its timer and forget its data (the pool decides reuse or close)."""
        self._cancel_timer()
        self.active = False
        self.draining = False
        self.pieces = []
        self.reused = True

    def close(self) -> None:
        """End the connection gracefully (its response, if any, was complete)."""
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        if self.error is None and not self.complete:
            self.error = ConnectionBroken("the exchange was abandoned")
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def drain(self, grace: float) -> None:
        """Let the rest of a response the consumer no longer wants arrive in the background, then reuse the
        connection; give up on it after ``grace`` seconds."""
        self.draining = True
        self.pieces.clear()
        self.buffered = 0
        self._read_timeout = None
        self._cancel_timer()
        self._timer = self.loop.call_later(grace, self._on_timer)
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    # -- asyncio Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.counted = True
        self.pool.made(self)

    def data_received(self, data: bytes) -> None:
        if not self.active:  # bytes nobody asked for: the connection cannot be trusted any more
            self._drop_unasked()
            return
        self.got_bytes = True
        if self._read_timeout is not None:
            self._last_io = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            if self.complete:
                self.keep_alive = False  # trailing garbage after a complete answer: keep it, drop the link
            else:
                cause = exc.__context__
                self._fail(cause if isinstance(cause, InvalidResponse)
                           else InvalidResponse(f"not a valid HTTP response ({exc})"))
        if not self.headers_done and self.error is None:
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._fail(InvalidResponse(f"the response head exceeds {MAX_HEAD} bytes"))
        elif self.complete and self.draining:
            self.pool.release(self)
            return
        if self.streaming and self.buffered > HIGH_WATER and not self.paused and not self.complete:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        if self._waiter is not None:
            self._wake()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.active and not self.complete and self.error is None:
            if exc is None and self.headers_done and self._close_delimited():
                self._message_end()
                self.keep_alive = False
            else:
                broken = ConnectionBroken("connection reset by the upstream" if exc is not None
                                          else "the upstream closed the connection before the response was complete")
                broken.before_response = not self.got_bytes
                self.error = broken
        if self._waiter is not None:
            self._wake()
        if self.counted:
            self.counted = False
            self.pool.lost(self)

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        if len(name) == 16 and name.lower() == b"content-encoding":
            wbits = _DECODERS.get(value.strip().lower())
            if wbits is not None:
                self._decoder = zlib.decompressobj(wbits)
            elif value.strip().lower() != b"identity":
                raise InvalidResponse(f"unsupported content-encoding {value[:40]!r}")

    def on_headers_complete(self) -> None:
        if self.complete:
            raise InvalidResponse("a second response arrived for one request")
        self.status = self.parser.get_status_code()
        self._informational = 100 <= self.status < 200
        if not self._informational:
            self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.draining:
            return
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                raise InvalidResponse(f"undecodable compressed body ({exc})") from None
            if not body:
                return
        self.pieces.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self._informational:  # 100 Continue and friends precede the real answer
            self._informational = False
            self.raw_headers = []
            self._decoder = None
            return
        self.keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() == "1.1"
        self._message_end()

    # -- internals -------------------------------------------------------------------------------
    def _message_end(self) -> None:
        if self._decoder is not None and not self.draining:
            try:
                rest = self._decoder.flush()
            except zlib.error:
                rest = b""
            if rest:
                self.pieces.append(rest)
                self.buffered += len(rest)
        self.complete = True
        self._cancel_timer()

    def _close_delimited(self) -> bool:
        """True when the body ends with the connection: neither a content-length nor chunked coding."""
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    def _satisfied(self, want: int) -> bool:
        if self.complete or self.error is not None:
            return True
        if want == WANT_PIECE:
            return bool(self.pieces)
        return want == WANT_HEADERS and self.headers_done

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._satisfied(self._want):
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _drop_unasked(self) -> None:
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        """The total deadline, the drain grace, or the lazily re-armed read timeout has come."""
        self._timer = None
        if self.complete or self.error is not None or self.closed:
            return
        timeout = self._read_timeout
        if timeout is not None:
            now = self.loop.time()
            if self.paused:  # the consumer lags: the upstream is not stalling
                self._timer = self.loop.call_at(now + timeout, self._on_timer)
                return
            if now - self._last_io < timeout - 0.001:
                self._timer = self.loop.call_at(self._last_io + timeout, self._on_timer)
                return
        if self.draining:
            self.draining = False
            self.error = ConnectionBroken("the rest of an abandoned response did not arrive in time")
        else:
            self.error = TimeoutError()
        if self.transport is not None:
            self.transport.abort()
        if self._waiter is not None:
            self._wake()
