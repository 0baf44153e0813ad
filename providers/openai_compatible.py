"""Any OpenAI-compatible chat completions endpoint (OpenAI, Azure-style, vLLM, Ollama, OpenRouter, Groq...).

A direct pass-through: the body goes up as JSON, the answer's bytes come back unchanged, stream events
are split on SSE boundaries and handed on without re-encoding, in batches of those that arrived together.
One pool of keep-alive connections per provider, through our own HTTP/1.1 client (:mod:`providers.http1`):
aiohttp's client cost about 30% of the router's CPU per request; aiohttp measured in turn roughly 15x the
throughput of httpx.AsyncClient at concurrency 32 here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator

import orjson

from providers.base import ChatCall, Completion, LastBatch
from providers.classify import classify
from providers.http1 import HTTP1Error, HTTP1Pool, InvalidResponse, StreamResponse
from router.config.schema import ProviderSpec
from router.errors import ProviderError, UpstreamConnectionError, UpstreamServerError, UpstreamTimeout

_DONE = b"[DONE]"


class OpenAICompatibleProvider:
    keeps_deadline = True
    """``complete`` is bounded by ``call.timeout`` as a whole (the pool's deadline covers connect, send, read)."""

    def __init__(self, name: str, spec: ProviderSpec) -> None:
        self.name = name
        self.spec = spec
        base = (spec.base_url or "").rstrip("/")
        self.url = f"{base}/chat/completions"
        if spec.api_version:
            self.url += f"?api-version={spec.api_version}"
        self.headers: dict[str, str] = {"content-type": "application/json", **spec.headers}
        if spec.api_key:
            if spec.api_version:
                self.headers["api-key"] = spec.api_key
            else:
                self.headers["authorization"] = f"Bearer {spec.api_key}"
        self._pool = HTTP1Pool(self.url, max_connections=spec.max_connections, connect_timeout=spec.connect_timeout,
                               idle_timeout=30.0)
        self._head = self._pool.prepare("POST", self.url, self.headers)

    @staticmethod
    def _headers(call: ChatCall) -> dict[str, str] | None:
        if not call.request_id:
            return call.extra_headers or None
        if not call.extra_headers:
            return {"x-request-id": call.request_id}
        return {**call.extra_headers, "x-request-id": call.request_id}

    async def complete(self, call: ChatCall) -> Completion:
        try:
            resp = await self._pool.complete(self._head, orjson.dumps(call.body), self._headers(call),
                                             timeout=call.timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} did not answer within {call.timeout:g}s") from None
        except HTTP1Error as exc:
            raise _transport_error(self.name, exc) from None
        raw = resp.body
        if resp.status != 200:
            raise classify(resp.status, raw, resp.headers, self.name)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamServerError(f"{self.name} returned a body that is not JSON") from None
        if not isinstance(data, dict) or "choices" not in data:
            if isinstance(data, dict) and "error" in data:
                raise classify(502, raw, None, self.name)
            raise UpstreamServerError(f"{self.name} returned JSON without choices")
        return Completion(data=data, raw=raw)

    async def stream(self, call: ChatCall) -> AsyncIterator[bytes]:
        async for batch in self.stream_batches(call):
            for payload in batch:
                yield payload

    async def stream_batches(self, call: ChatCall) -> AsyncIterator[list[bytes]]:
        """The stream as batches: the events that one network read completed, never empty.

        Never hangs: the client bounds each wait for bytes by ``call.timeout``, and an upstream that keeps the
        socket busy without completing an event (comments, trickled bytes) is cut off once ``call.timeout`` has
        passed since the consumer asked for the next batch (checked after each read, so at most twice that).
        Leaving early (an error event, a client gone) closes the connection; after ``[DONE]`` it is reused."""
        resp: StreamResponse | None = None
        try:
            resp = await self._pool.stream(self._head, orjson.dumps(call.body), self._headers(call),
                                           read_timeout=call.timeout)
            if resp.status != 200:
                raise classify(resp.status, await resp.read_all(), resp.headers, self.name)
            async for batch in _sse_batches(resp, call.timeout):
                done = False
                for i, payload in enumerate(batch):
                    if payload == _DONE:
                        del batch[i:]
                        done = True
                        break
                    if payload.startswith(b'{"error"'):
                        if i:
                            yield batch[:i]
                        raise classify(502, payload, None, self.name)
                if done:
                    resp.finish()
                    if batch:
                        yield LastBatch(batch)
                    return
                if batch:
                    yield batch
        except ProviderError:
            raise
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} stream stalled for more than {call.timeout:g}s") from None
        except HTTP1Error as exc:
            raise _transport_error(f"{self.name} stream broke", exc) from None
        finally:
            if resp is not None:
                resp.close()
        raise UpstreamConnectionError(f"{self.name} stream ended before [DONE]")

    async def close(self) -> None:
        await self._pool.close()


def _transport_error(where: str, exc: HTTP1Error) -> ProviderError:
    """An answer that is not HTTP is the upstream's fault (5xx-like); a broken connection is a connection error."""
    if isinstance(exc, InvalidResponse):
        return UpstreamServerError(f"{where}: {exc}")
    return UpstreamConnectionError(f"{where}: {type(exc).__name__}: {exc}")


async def _sse_batches(pieces: AsyncIterable[bytes], stall_after: float) -> AsyncIterator[list[bytes]]:
    """Yield, per piece (what one network read brought, or all that arrived while the consumer was busy), the
    ``data`` of each SSE event it completed; comments and other fields are skipped. Raise ``TimeoutError`` when
    no event completed within ``stall_after`` seconds of being asked."""
    buffer = b""
    asked = time.monotonic()
    async for piece in pieces:
        buffer = buffer + piece if buffer else piece
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        batch: list[bytes] = []
        if b"\n\n" in buffer:
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"data: ") and b"\n" not in event:
                    batch.append(event[6:])
                else:
                    payload = _event_data(event)
                    if payload is not None:
                        batch.append(payload)
        if batch:
            yield batch
            asked = time.monotonic()
        elif time.monotonic() - asked > stall_after:
            raise TimeoutError
    if buffer.strip():
        payload = _event_data(buffer.strip())
        if payload is not None:
            yield [payload]


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    parts: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts) if parts else None

