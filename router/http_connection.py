"""The HTTP/1.1 connection the router serves: uvicorn's httptools protocol plus the bounds it lacks.

uvicorn closes a kept-alive connection that stays idle, but it does not bound how long a client may take to
send a request's head or body, how large the head may grow, or how many connections may be open: a few
hundred slow or silent clients could hold every file descriptor. Per connection this adds one timer (one
``call_later`` handle, re-armed only when it fires early, not per request) and a few counters:

- ``header_timeout``: from connecting, or from the first byte of a later request on a kept-alive connection,
  until the request's head is complete; then 408 and close.
- ``body_timeout``: the longest silence while a request body is arriving; then 408 (when no answer has
  started) and close. Silence while the router itself paused reading (the app has not taken the body yet)
  does not count.
- ``max_header_bytes``: request line and headers together; beyond it 431 and close.
- ``max_connections`` (per process): beyond it the connection idle the longest in keep-alive is closed to make
  room; with none idle, the new connection is answered 503 and closed.
- A client half-close (``shutdown(SHUT_WR)``) with requests pending: those are still answered, then the
  connection closes; a connection lost mid-request marks every pending request disconnected (the app sees a
  normal disconnect, not a write to a closed transport).

It relies on HttpToolsProtocol's attributes (``cycle``, ``flow``, ``transport``, ``connections``,
``timeout_keep_alive``, ``timeout_keep_alive_task``) and parser callbacks, checked at import; pyproject pins
the uvicorn range.
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
import time
import weakref
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from router.errors import error_body

if TYPE_CHECKING:
    from router.settings import Settings

log = logging.getLogger("agent_router.http")

_RELIED_ON = ("on_message_begin", "on_headers_complete", "on_message_complete", "on_response_complete",
              "data_received", "eof_received", "connection_made", "connection_lost")
if not all(callable(getattr(HttpToolsProtocol, name, None)) for name in _RELIED_ON):  # pragma: no cover
    raise ImportError("this uvicorn's HttpToolsProtocol lacks a hook router/http_connection.py relies on; "
                      "install the uvicorn range pinned in pyproject.toml")

_WAITING = 0
"""Not timed here: the app is running, or the connection is kept alive between requests (uvicorn's timer)."""
_HEAD = 1
_BODY = 2
_HEAD_END = b"\r\n\r\n"
_FD_RESERVE = 128
"""File descriptors kept back from the automatic connection limit: database, Redis, logs, config reads."""


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_header_bytes: int
    max_connections: int


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(settings.header_timeout, settings.body_timeout, settings.keepalive_timeout,
                            settings.max_header_bytes, settings.max_connections or default_max_connections())


def default_max_connections() -> int:
    """Half of what the process's open-file limit leaves after a reserve: each served request may hold one
    upstream connection besides its own."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 17
    return max(16, (soft - _FD_RESERVE) // 2)


def protocol_factory(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """What uvicorn's ``http=`` takes: uvicorn calls it like a protocol class. A partial (not a class made on
    the fly) so that it pickles into ``--workers`` processes."""
    return cast("type[asyncio.Protocol]", partial(GuardedHttpToolsProtocol, limits=limits))


_idle_by_server: weakref.WeakKeyDictionary[ServerState, dict[GuardedHttpToolsProtocol, None]] = (
    weakref.WeakKeyDictionary())


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: ConnectionLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self.timeout_keep_alive = limits.keepalive_timeout  # type: ignore[assignment]  # uvicorn's is an int
        self._idle = _idle_by_server.setdefault(server_state, {})
        """Kept-alive connections between requests, oldest first: closed first when the limit is reached."""
        self._phase = _WAITING
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._open: deque[RequestResponseCycle] = deque()

    # Connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections and not self._make_room():
            _warn_refused(self._limits.max_connections)
            self._answer_and_close(503, "service_unavailable", "too many open connections; retry shortly")
            return
        self._phase = _HEAD
        self._arm(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cycle in self._open:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client will send nothing more. Requests it already sent in full are still answered (True keeps
        the transport open for writing); the connection closes after the last one."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self._phase == _BODY:
            return None
        cycle.keep_alive = False
        return True

    def data_received(self, data: bytes) -> None:
        self._idle.pop(self, None)
        if self._phase == _BODY:
            self._deadline = self.loop.time() + self._limits.body_timeout
        else:
            count = self._head_bytes + len(data)
            if count > self._limits.max_header_bytes:
                end = data.find(_HEAD_END)
                if end < 0 or self._head_bytes + end > self._limits.max_header_bytes:
                    self._head_too_large()
                    return
            self._head_bytes = count
        super().data_received(data)

    # Parser callbacks
    def on_message_begin(self) -> None:
        if self._phase != _HEAD:
            self._phase = _HEAD
            self._arm(self._limits.header_timeout)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._phase, self._head_bytes = _BODY, 0
        self._arm(self._limits.body_timeout)
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:
            while self._open and self._open[0].response_complete:
                self._open.popleft()
            self._open.append(self.cycle)

    def on_message_complete(self) -> None:
        self._phase = _WAITING
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:
            self._idle[self] = None

    # Bounds
    def _arm(self, delay: float) -> None:
        """Move the deadline; the one timer is re-armed only when it would fire too late."""
        self._deadline = deadline = self.loop.time() + delay
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._phase == _WAITING or self.transport.is_closing():
            return
        now = self.loop.time()
        if self._phase == _BODY and self.flow.read_paused:
            self._deadline = now + self._limits.body_timeout  # the wait is ours, not the client's
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        if self._phase == _HEAD:
            self._head_timed_out()
        else:
            self._body_timed_out()

    def _head_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # a pipelined head is late: answer the request in progress, then close
            return
        self._answer_and_close(408, "request_timeout", "the request's headers did not arrive in time")

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle.response_started:
            self.transport.close()
            return
        cycle.disconnected = True  # the app, waiting for the body, sees a disconnect and writes nothing more
        cycle.message_event.set()
        self._answer_and_close(408, "request_timeout", "the request body stopped arriving")

    def _head_too_large(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self.transport.close()  # mid-answer: a 431 cannot be written in between
            return
        self._answer_and_close(431, "request_header_fields_too_large",
                               f"the request line and headers exceed {self._limits.max_header_bytes} bytes")

    def _make_room(self) -> bool:
        """Close the connection idle the longest in keep-alive; False when none is idle."""
        for oldest in self._idle:
            del self._idle[oldest]
            oldest.transport.close()
            return True
        return False

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        self._phase = _WAITING
        if self.transport.is_closing():
            return
        body = orjson.dumps(error_body(status, message, "invalid_request_error" if status < 500 else code, code))
        phrase = http.HTTPStatus(status).phrase.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body))
        self.transport.close()


_last_refusal_warning = 0.0


def _warn_refused(limit: int) -> None:
    """One warning per ten seconds at most: a flood must not become a flood of log lines."""
    global _last_refusal_warning
    now = time.monotonic()
    if now - _last_refusal_warning >= 10.0:
        _last_refusal_warning = now
        log.warning("connection refused with 503: %d connections open (AGENT_ROUTER_MAX_CONNECTIONS) and none "
                    "idle to close", limit)
