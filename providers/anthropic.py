"""Anthropic Messages upstreams (``type: anthropic``): ``POST {base_url}/v1/messages`` and ``/count_tokens``.

A faithful pass-through for a Messages caller: the body goes up as the router received it (the executor only
sets ``model`` and the route's params), the caller's ``anthropic-*`` headers travel verbatim (never an allow-list
of values: betas are an open set), and the answer's bytes come back unchanged. Stream events are handed on as the
JSON of their ``data:`` lines (their ``event:`` name is the payload's ``type``), in batches of those that arrived
together; the batch holding ``message_stop`` is the last. Error bodies are kept (bounded) on the raised error, so a
Messages caller gets Anthropic's own wording (Claude Code's recovery matches on it). The HTTP client, its bounds and
connection reuse are those of :mod:`providers.openai_compatible`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from providers.base import ChatCall, Completion, LastBatch
from providers.bounded_body import read_body
from providers.classify import classify
from providers.openai_compatible import (
    CLIENT_FAULTS,
    encoded_body,
    end_response,
    event_batches,
    first_event_is_sane,
    read_error_body,
    stream_timeout,
    transport_error,
    whole_timeout,
)
from providers.upstream_session import UpstreamSession
from router.config.schema import ProviderSpec
from router.errors import ProviderError, UpstreamConnectionLost, UpstreamServerError

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
WIRE = "messages"
_STOP = b'"message_stop"'
_STREAM_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500,
                        "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                        "not_found_error": 404, "request_too_large": 413, "timeout_error": 504}
"""The status an ``error`` event stands for (a stream already answered 200)."""


def _root(base_url: str | None) -> str:
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


def kept_error(status: int, body: bytes, headers: Any, where: str) -> ProviderError:
    """The classified error with Anthropic's body on it, for a Messages caller to get unmodified."""
    error = classify(status, body, headers, where)
    if body:
        error.upstream_body, error.upstream_wire = body, WIRE
        if error.upstream_status is None:
            error.upstream_status = status
    return error


class AnthropicProvider:
    wire = WIRE
    keeps_deadline = True
    """``complete`` is bounded by ``call.timeout`` as a whole (aiohttp's total timeout)."""

    def __init__(self, name: str, spec: ProviderSpec) -> None:
        self.name = name
        self.spec = spec
        root = _root(spec.base_url)
        self._url = URL(f"{root}/v1/messages")
        self._count_url = URL(f"{root}/v1/messages/count_tokens")
        headers: dict[str, str] = {"content-type": "application/json", **spec.headers}
        if spec.api_key:
            headers["x-api-key"] = spec.api_key
        self._session = UpstreamSession(spec, str(self._url), headers)

    @staticmethod
    def _headers(call: ChatCall) -> dict[str, str]:
        headers = dict(call.extra_headers) if call.extra_headers else {}
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        if call.request_id:
            headers["x-request-id"] = call.request_id
        return headers

    async def complete(self, call: ChatCall) -> Completion:
        raw = await self._post(self._url, call)
        return Completion(data=whole_message(raw, self.name), raw=raw)

    async def count_tokens(self, call: ChatCall) -> dict[str, Any]:
        raw = await self._post(self._count_url, call)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamServerError(f"{self.name} returned a token count that is not JSON") from None
        count = data.get("input_tokens") if isinstance(data, dict) else None
        if type(count) is not int or count < 0:
            raise UpstreamServerError(f"{self.name} returned a token count without input_tokens")
        return {"input_tokens": count}

    async def _post(self, url: URL, call: ChatCall) -> bytes:
        session = self._session.get()
        try:
            async with session.post(url, data=encoded_body(call.body, self.name), headers=self._headers(call),
                                    timeout=whole_timeout(call.timeout, self.spec.connect_timeout),
                                    allow_redirects=False) as resp:
                if resp.status != 200:
                    raise kept_error(resp.status, await read_error_body(resp, self.name), resp.headers, self.name)
                return await read_body(resp, self.spec.max_response_bytes, self.name)
        except ProviderError:
            raise
        except CLIENT_FAULTS as exc:
            raise transport_error(self.name, exc, f"did not answer within {call.timeout:g}s") from None

    async def stream(self, call: ChatCall) -> AsyncIterator[bytes]:
        async for batch in self.stream_batches(call):
            for payload in batch:
                yield payload

    async def stream_batches(self, call: ChatCall) -> AsyncIterator[list[bytes]]:
        """Event payloads per network read, up to ``message_stop`` (see the module docstring). Never hangs: each
        wait for bytes is bounded by ``call.timeout``, and so is a trickle that completes no event."""
        session = self._session.get()
        resp: aiohttp.ClientResponse | None = None
        done = False
        try:
            resp = await session.post(self._url, data=encoded_body(call.body, self.name), headers=self._headers(call),
                                      timeout=stream_timeout(call.timeout, self.spec.connect_timeout),
                                      allow_redirects=False)
            if resp.status != 200:
                raise kept_error(resp.status, await read_error_body(resp, self.name), resp.headers, self.name)
            if resp.headers.get("content-type", "").startswith("application/json"):
                raw = await read_body(resp, self.spec.max_response_bytes, self.name)
                raise kept_error(502, raw, None, self.name) if b'"error"' in raw else UpstreamServerError(
                    f"{self.name} answered a stream request with a JSON body, not an event stream")
            async for batch in self._batches(resp, call.timeout):
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

    async def _batches(self, resp: aiohttp.ClientResponse, stall_after: float) -> AsyncIterator[list[bytes]]:
        first = True
        async for batch in event_batches(resp, self.spec, self.name, stall_after):
            for i, payload in enumerate(batch):
                if b"\n" in payload:  # data over several lines: made one line, or the caller's framing breaks
                    batch[i] = payload = _one_line(payload, self.name)
                if first:
                    first_event_is_sane(payload, self.name)
                    first = False
                if payload.startswith(b'{"type":"error"') or (b'"error"' in payload[:40] and _is_error_event(payload)):
                    if i:
                        yield batch[:i]
                    raise stream_error(payload, self.name)
                if _STOP in payload[:40]:
                    del batch[i + 1:]
                    yield LastBatch(batch)
                    return
            yield batch
        if first:
            raise UpstreamServerError(f"{self.name} ended its stream without sending an event")
        raise UpstreamConnectionLost(f"{self.name} stream ended before message_stop")

    async def close(self) -> None:
        await self._session.close()


def whole_message(raw: bytes, where: str) -> dict[str, Any]:
    """A whole answer's JSON: a ``message`` object with a content list, else the upstream's fault."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamServerError(f"{where} returned a body that is not JSON") from None
    if isinstance(data, dict) and data.get("type") == "error":
        raise kept_error(502, raw, None, where)
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamServerError(f"{where} returned JSON that is not a message")
    return data


def stream_error(payload: bytes, where: str) -> ProviderError:
    """An ``error`` event: the status its type stands for, with its body kept."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    status = _STREAM_ERROR_STATUS.get(kind, 502) if isinstance(kind, str) else 502
    return kept_error(status, payload, None, where)


def _is_error_event(payload: bytes) -> bool:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("type") == "error"


def _one_line(payload: bytes, where: str) -> bytes:
    try:
        return orjson.dumps(orjson.loads(payload))
    except orjson.JSONDecodeError:
        raise UpstreamServerError(f"{where} sent a stream event that is not JSON") from None

