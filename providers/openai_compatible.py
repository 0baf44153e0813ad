"""Any OpenAI-compatible chat completions endpoint (OpenAI, Azure-style, vLLM, Ollama, OpenRouter, Groq...).

A direct pass-through: the body goes up as JSON, the answer's bytes come back unchanged, stream events
are split on SSE boundaries and handed on without re-encoding, in batches of those that arrived together.
The HTTP client is aiohttp, set up once per provider by :mod:`providers.upstream_session`; answers are read
within the provider's ``max_response_bytes`` (:mod:`providers.bounded_body`) and stream events within its
``max_event_bytes`` (:mod:`providers.sse_splitter`).

Anything wrong before the first event is an upstream fault raised by the first ``__anext__`` (so the executor
falls back): an error status, a JSON body in place of a stream, bytes that are not SSE, a first event that is
not a JSON object, a stream that ends before any event.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Any

import aiohttp
import orjson
from yarl import URL

from providers.base import ChatCall, Completion, LastBatch
from providers.bounded_body import BodyTooLarge, decoder_for, read_body
from providers.classify import classify
from providers.sse_splitter import EventTooLarge, NotAnEventStream, SSESplitter
from providers.upstream_session import UpstreamSession
from router.config.schema import ProviderSpec
from router.errors import (
    ProviderError,
    RequestNotForwardable,
    UpstreamConnectionError,
    UpstreamConnectionLost,
    UpstreamServerError,
    UpstreamTimeout,
)

_DONE = b"[DONE]"
ERROR_BODY_LIMIT = 1024 * 1024
"""Error answers are read up to this size (their message is all the router keeps)."""
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 5.0
"""After ``[DONE]``, the rest of the message (the chunked end) is awaited in the background, this long and
this large at most, so the connection can be reused; otherwise it is closed."""

CLIENT_FAULTS = (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError)
"""What aiohttp raises for a timeout, a connection or protocol failure; :func:`transport_error` maps them."""

_draining: set[asyncio.Task[None]] = set()


def encoded_body(body: dict[str, Any], provider: str) -> bytes:
    """The upstream body as JSON; one the encoder refuses (nested beyond its depth limit) is the request's
    problem, never the upstream's, so it is raised as :class:`RequestNotForwardable`."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:  # (orjson's is TypeError itself; nothing else is raised here)
        raise RequestNotForwardable(f"the request cannot be forwarded to {provider}: {exc}") from None


class OpenAICompatibleProvider:
    keeps_deadline = True
    """``complete`` is bounded by ``call.timeout`` as a whole (aiohttp's total timeout: connect, send, read)."""

    def __init__(self, name: str, spec: ProviderSpec) -> None:
        self.name = name
        self.spec = spec
        base = (spec.base_url or "").rstrip("/")
        self.wires: tuple[str, ...] = (*spec.apis, "embeddings")
        self.wire = spec.apis[0]
        query = f"?api-version={spec.api_version}" if spec.api_version else ""
        self.urls = {wire: URL(f"{base}{path}{query}") for wire, path in ENDPOINTS.items()}
        self.url = str(self.urls[self.wire])
        headers: dict[str, str] = {"content-type": "application/json", **spec.headers}
        if spec.api_key:
            if spec.api_version:
                headers["api-key"] = spec.api_key
            else:
                headers["authorization"] = f"Bearer {spec.api_key}"
        self._session = UpstreamSession(spec, self.url, headers)

    @staticmethod
    def _headers(call: ChatCall) -> dict[str, str] | None:
        if not call.request_id:
            return call.extra_headers or None
        if not call.extra_headers:
            return {"x-request-id": call.request_id}
        return {**call.extra_headers, "x-request-id": call.request_id}

    async def complete(self, call: ChatCall) -> Completion:
        session = self._session.get()
        try:
            async with session.post(self.urls[call.wire], data=encoded_body(call.body, self.name),
                                    headers=self._headers(call),
                                    timeout=whole_timeout(call.timeout, self.spec.connect_timeout),
                                    allow_redirects=False) as resp:
                if resp.status != 200:
                    raise classify(resp.status, await read_error_body(resp, self.name), resp.headers, self.name)
                raw = await read_body(resp, self.spec.max_response_bytes, self.name)
        except ProviderError:
            raise
        except CLIENT_FAULTS as exc:
            raise transport_error(self.name, exc, f"did not answer within {call.timeout:g}s") from None
        return Completion(data=whole_answer(raw, self.name, call.wire), raw=raw)

    async def stream(self, call: ChatCall) -> AsyncIterator[bytes]:
        async for batch in self.stream_batches(call):
            for payload in batch:
                yield payload

    async def stream_batches(self, call: ChatCall) -> AsyncIterator[list[bytes]]:
        """The stream as batches: the events that one network read completed, never empty.

        Never hangs: aiohttp bounds each wait for bytes by ``call.timeout``, and an upstream that keeps the
        socket busy without completing an event (comments, trickled bytes) is cut off once ``call.timeout`` has
        passed since the consumer asked for the next batch (checked after each read, so at most twice that).
        Leaving early (an error event, a client gone) closes the connection; after ``[DONE]`` it is reused."""
        session = self._session.get()
        resp: aiohttp.ClientResponse | None = None
        done = False
        try:
            resp = await session.post(self.urls[call.wire], data=encoded_body(call.body, self.name),
                                      headers=self._headers(call),
                                      timeout=stream_timeout(call.timeout, self.spec.connect_timeout),
                                      allow_redirects=False)
            if resp.status != 200:
                raise classify(resp.status, await read_error_body(resp, self.name), resp.headers, self.name)
            if resp.headers.get("content-type", "").startswith("application/json"):
                raise json_in_place_of_stream(await read_body(resp, self.spec.max_response_bytes, self.name),
                                              self.name)
            async for batch in self._batches(resp, call.timeout, call.wire):
                done = type(batch) is LastBatch
                yield batch
            done = True
        except ProviderError:
            raise
        except CLIENT_FAULTS as exc:
            raise transport_error(self.name, exc, f"stream stalled for more than {call.timeout:g}s") from None
        finally:
            if resp is not None:
                end_response(resp, done)

    async def _batches(self, resp: aiohttp.ClientResponse, stall_after: float,
                       wire: str = "chat") -> AsyncIterator[list[bytes]]:
        """Events per network read, up to the stream's end (chat's ``[DONE]``, left out; a Responses stream's
        terminal event, kept): the events of the end's read are yielded as a LastBatch, and the generator returns
        only after the end and raises on any other. An error event (chat's ``{"error"``, Responses' ``error``) is
        the upstream's failure, classified, so the executor may still fall back before the first event."""
        ends, error_prefix = _ENDS[wire]
        first = True
        async for batch in event_batches(resp, self.spec, self.name, stall_after):
            if first:
                first_event_is_sane(batch[0], self.name)
                first = False
            for i, payload in enumerate(batch):
                kept = ends(payload)
                if kept is not None:
                    del batch[i + kept:]
                    if batch:
                        yield LastBatch(batch)
                    return
                if payload.startswith(error_prefix):
                    if i:
                        yield batch[:i]
                    raise classify(502, payload, None, self.name)
            yield batch
        if first:
            raise UpstreamServerError(f"{self.name} ended its stream without sending an event")
        raise UpstreamConnectionLost(f"{self.name} stream ended before {_END_NAMES[wire]}")

    async def close(self) -> None:
        await self._session.close()


ENDPOINTS = {"chat": "/chat/completions", "responses": "/responses", "embeddings": "/embeddings"}
"""The path under ``base_url`` of each API an OpenAI-compatible upstream may serve."""
_TERMINAL = re.compile(rb'\{"type":"response\.(?:completed|incomplete|failed)"')


def _chat_end(payload: bytes) -> int | None:
    """``[DONE]`` ends a chat stream and is not an event: keep none of it."""
    return 0 if payload == _DONE else None


def _responses_end(payload: bytes) -> int | None:
    """A terminal event ends a Responses stream and is kept; a ``[DONE]`` some servers add ends it too."""
    if payload == _DONE:
        return 0
    return 1 if _TERMINAL.match(payload) else None


_ENDS: dict[str, tuple[Callable[[bytes], int | None], bytes]] = {
    "chat": (_chat_end, b'{"error"'), "responses": (_responses_end, b'{"type":"error"')}
_END_NAMES = {"chat": "[DONE]", "responses": "its terminal event"}


async def event_batches(resp: aiohttp.ClientResponse, spec: ProviderSpec, where: str,
                        stall_after: float) -> AsyncIterator[list[bytes]]:
    """The ``data`` payloads of an SSE answer, per network read (never an empty batch), until the body ends.

    Shared by the adapters, which judge the payloads (end markers, error events). Decoded within
    ``max_response_bytes``, each event within ``max_event_bytes``; an upstream that keeps the socket busy without
    completing an event is cut off once ``stall_after`` has passed since the consumer asked for the next batch."""
    decoder = decoder_for(resp.headers, spec.max_response_bytes, where)
    splitter = SSESplitter(spec.max_event_bytes)
    content = resp.content
    asked = time.monotonic()
    try:
        while True:
            piece = await content.readany()
            if not piece:
                batch = splitter.finish()
                if batch:
                    yield batch
                return
            batch = splitter.feed(decoder.feed(piece) if decoder is not None else piece)
            if not batch:
                if time.monotonic() - asked > stall_after:
                    raise TimeoutError
                continue
            yield batch
            asked = time.monotonic()
    except EventTooLarge as exc:
        raise BodyTooLarge(f"{where} sent {exc}") from None
    except NotAnEventStream as exc:
        raise UpstreamServerError(f"{where} did not answer with an event stream: {exc}") from None


_ANSWER_FIELD = {"chat": ("choices", "choices"), "responses": ("output", "an output list"),
                 "embeddings": ("data", "a data list")}


def whole_answer(raw: bytes, where: str, wire: str = "chat") -> dict[str, Any]:
    """A whole answer's JSON: an object with the wire's answer field (chat's ``choices``, a Response's ``output``,
    embeddings' ``data``), else the upstream's fault (an error object classified). A Response carries
    ``"error": null`` when it went well, so only a non-null error counts."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamServerError(f"{where} returned a body that is not JSON") from None
    field, what = _ANSWER_FIELD.get(wire, _ANSWER_FIELD["chat"])
    if not isinstance(data, dict) or field not in data or (wire != "chat" and not isinstance(data[field], list)):
        if isinstance(data, dict) and data.get("error") is not None:
            raise classify(502, raw, None, where)
        raise UpstreamServerError(f"{where} returned JSON without {what}")
    return data


def first_event_is_sane(payload: bytes, where: str) -> None:
    """The first event must be a JSON object (or the end marker): else the stream is garbage, fall back."""
    if payload == _DONE:
        return
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UpstreamServerError(f"{where} sent a first stream event that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamServerError(f"{where} sent a first stream event that is not a JSON object")


def json_in_place_of_stream(raw: bytes, where: str) -> ProviderError:
    """A stream request answered with a JSON body: an error object is classified, anything else is a fault."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return classify(502, raw, None, where)
    return UpstreamServerError(f"{where} answered a stream request with a JSON body, not an event stream")


def transport_error(where: str, exc: BaseException, timed_out: str) -> ProviderError:
    """Nothing sent (no connection): worth a retry. Broken after sending: never re-sent to this deployment."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamConnectionError(f"{where}: could not connect in time")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{where} {timed_out}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return UpstreamConnectionError(f"{where}: cannot connect: {reason}")
    if isinstance(exc, aiohttp.ClientResponseError):  # aiohttp's parser refused the answer
        reason = str(exc.message).split("\n", 1)[0][:120]  # never echo the upstream's bytes at length
        return UpstreamServerError(f"{where}: not a valid HTTP response ({reason})")
    return UpstreamConnectionLost(f"{where}: the connection broke ({type(exc).__name__})")


async def read_error_body(resp: aiohttp.ClientResponse, where: str) -> bytes:
    """An error answer's body for its message; one too large or undecodable still leaves its status to classify."""
    try:
        return await read_body(resp, ERROR_BODY_LIMIT, where)
    except UpstreamServerError:
        return b""


def end_response(resp: aiohttp.ClientResponse, done: bool) -> None:
    """Reuse the connection only after a complete answer ([DONE] and the message's end); else close it."""
    if not done:
        resp.close()
    elif resp.content.is_eof():
        resp.release()
    else:
        task = asyncio.get_running_loop().create_task(_drain(resp))
        _draining.add(task)
        task.add_done_callback(_draining.discard)


async def _drain(resp: aiohttp.ClientResponse) -> None:
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            left = DRAIN_BYTES
            while left > 0 and (piece := await resp.content.readany()):
                left -= len(piece)
    except (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError):
        pass
    finally:
        if resp.content.is_eof():
            resp.release()
        else:
            resp.close()


@lru_cache(maxsize=64)
def whole_timeout(total: float, connect: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total, sock_connect=connect)


@lru_cache(maxsize=64)
def stream_timeout(read: float, connect: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
