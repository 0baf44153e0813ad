"""Any OpenAI-compatible chat completions endpoint (OpenAI, Azure-style, vLLM, Ollama, OpenRouter, Groq...).

A direct pass-through: the body goes up as JSON, the answer's bytes come back unchanged, stream events
are split on SSE boundaries and handed on without re-encoding, in batches of those that arrived together.
One pooled keep-alive aiohttp session per provider: aiohttp measured roughly 15x the throughput of
httpx.AsyncClient at concurrency 32 here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from providers.base import ChatCall, Completion
from providers.classify import classify
from router.config.schema import ProviderSpec
from router.errors import ProviderError, UpstreamConnectionError, UpstreamServerError, UpstreamTimeout

_DONE = b"[DONE]"


class OpenAICompatibleProvider:
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
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.spec.max_connections, keepalive_timeout=30,
                                             ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",),
                                            json_serialize=lambda o: orjson.dumps(o).decode())
            self._session = session
        return session

    def _headers(self, call: ChatCall) -> dict[str, str]:
        headers = self.headers
        if call.extra_headers or call.request_id:
            headers = {**headers, **(call.extra_headers or {})}
            if call.request_id:
                headers["x-request-id"] = call.request_id
        return headers

    async def complete(self, call: ChatCall) -> Completion:
        timeout = aiohttp.ClientTimeout(total=call.timeout, connect=self.spec.connect_timeout)
        try:
            async with self._client().post(self.url, data=orjson.dumps(call.body), headers=self._headers(call),
                                           timeout=timeout) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise classify(resp.status, raw, resp.headers, self.name)
        except ProviderError:
            raise
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} did not answer within {call.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(f"{self.name}: {type(exc).__name__}: {exc}") from None
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

        Never hangs: aiohttp's ``sock_read`` bounds each read, and an upstream that keeps the socket busy
        without completing an event (comments, trickled bytes) is cut off once ``call.timeout`` has passed
        since the consumer asked for the next batch (checked after each read, so at most twice that)."""
        timeout = aiohttp.ClientTimeout(total=None, connect=self.spec.connect_timeout, sock_read=call.timeout)
        try:
            async with self._client().post(self.url, data=orjson.dumps(call.body), headers=self._headers(call),
                                           timeout=timeout) as resp:
                if resp.status != 200:
                    raise classify(resp.status, await resp.read(), resp.headers, self.name)
                async for batch in _sse_batches(resp.content, call.timeout):
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
                    if batch:
                        yield batch
                    if done:
                        return
        except ProviderError:
            raise
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} stream stalled for more than {call.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(f"{self.name} stream broke: {type(exc).__name__}: {exc}") from None
        raise UpstreamConnectionError(f"{self.name} stream ended before [DONE]")

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


async def _sse_batches(content: aiohttp.StreamReader, stall_after: float) -> AsyncIterator[list[bytes]]:
    """Yield, per network read, the ``data`` of each SSE event it completed; comments and other fields are
    skipped. Raise ``TimeoutError`` when no event completed within ``stall_after`` seconds of being asked."""
    buffer = b""
    asked = time.monotonic()
    async for piece in content.iter_any():
        buffer += piece
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        batch: list[bytes] = []
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[:end], buffer[end + 2 :]
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

