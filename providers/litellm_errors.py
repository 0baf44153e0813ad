"""Map every exception litellm can raise to the router's typed errors.

litellm already sorts upstream failures into OpenAI-style classes (``RateLimitError``,
``ContextWindowExceededError``...). Its class decides where it is specific; otherwise the upstream's
status and body go through :func:`providers.classify.classify`, so an Anthropic 429 and an OpenAI 429
mean the same thing to the executor. Only called once litellm is loaded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from providers.classify import classify, error_message, retry_after_seconds
from router.errors import (
    ContentRefused,
    ContextWindowExceeded,
    ProviderError,
    RequestNotForwardable,
    UpstreamAuthError,
    UpstreamConnectionError,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from router.redact import PATTERNS_ONLY

# "litellm.BadRequestError: litellm.ContextWindowExceededError: AnthropicError - {...}" -> "{...}"
_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)+(?:\w+(?:Exception|Error)\s+-\s+)?")
_HANDLE_WITH = re.compile(r"\.?\s*Handle with `litellm\.\w+`\.?\s*$")
_MISCONFIGURED = ("llm provider not provided", "unmapped llm provider", "is not a valid llm provider")


def upstream_text(exc: BaseException) -> str:
    """The upstream's own error text inside a litellm message, without litellm's decorations."""
    text = str(getattr(exc, "message", None) or exc)
    text = text.split("Traceback (most recent call last)", 1)[0]  # litellm sometimes embeds one
    text = _HANDLE_WITH.sub("", _PREFIX.sub("", text.strip()))
    if len(text) > 3 and text[:2] in ("b'", 'b"') and text[-1] == text[1]:
        text = text[2:-1]
    return text


def response_headers(exc: BaseException) -> dict[str, str]:
    """Upstream response headers, wherever this litellm version keeps them, with lower-case names."""
    headers: dict[str, str] = {}
    response = getattr(exc, "response", None)
    for source in (getattr(response, "headers", None), getattr(exc, "headers", None),
                   getattr(exc, "litellm_response_headers", None)):
        if isinstance(source, Mapping) or hasattr(source, "items"):
            try:
                headers.update({str(k).lower(): str(v) for k, v in source.items()})  # type: ignore[union-attr]
            except (TypeError, AttributeError):
                continue
    return headers


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _transport_kinds() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeout kinds, connection kinds) of the HTTP clients litellm may use underneath."""
    import aiohttp
    import httpx

    timeouts: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException,
                                                 aiohttp.ServerTimeoutError)
    connections: tuple[type[BaseException], ...] = (ConnectionError, httpx.TransportError,
                                                    aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
    return timeouts, connections


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def to_provider_error(exc: BaseException, provider: str) -> ProviderError:
    """The typed error for ``exc``; never fails, whatever litellm raised."""
    if isinstance(exc, ProviderError):
        return exc
    from litellm import exceptions as lx

    original = getattr(exc, "original_exception", None)
    if isinstance(exc, lx.MidStreamFallbackError) and isinstance(original, BaseException):
        return to_provider_error(original, provider)
    text = upstream_text(exc)
    message = PATTERNS_ONLY(error_message(text)[0]) or type(exc).__name__  # no echoed credential (see classify)
    status = _status(exc)
    headers = response_headers(exc)
    got_response = bool(headers)
    detail = f"{provider} returned {status}: {message}" if got_response and status else f"{provider}: {message}"
    timeouts, connections = _transport_kinds()

    if not got_response and _not_encodable(exc):
        return RequestNotForwardable(f"the request cannot be forwarded to {provider}: {message}")
    if isinstance(exc, lx.Timeout) or (not got_response and _caused_by(exc, timeouts)):
        return UpstreamTimeout(f"{provider} did not answer in time: {message}")
    if not got_response and _caused_by(exc, connections):
        return UpstreamConnectionError(f"{provider} could not be reached: {message}")
    if isinstance(exc, lx.ContextWindowExceededError):
        return ContextWindowExceeded(detail, upstream_status=status)
    if isinstance(exc, lx.ContentPolicyViolationError):
        return ContentRefused(detail, upstream_status=status)
    if isinstance(exc, lx.RateLimitError):
        return UpstreamRateLimited(detail, retry_after=retry_after_seconds(headers))
    if isinstance(exc, lx.AuthenticationError | lx.PermissionDeniedError):
        return UpstreamAuthError(detail, upstream_status=status)
    if isinstance(exc, lx.APIConnectionError):
        # litellm's catch-all: an answer it could not read, or no answer at all.
        if got_response:
            return UpstreamServerError(f"{provider} sent an answer that could not be read: {message}")
        return UpstreamConnectionError(f"{provider}: {message}")
    if any(marker in text.lower() for marker in _MISCONFIGURED):
        # The deployment's model name means nothing to litellm: our config, not the caller's mistake.
        return UpstreamServerError(f"{provider}: {message}", code="upstream_misconfigured")
    if status is not None and 400 <= status < 600:
        return classify(status, text, headers, provider)
    return UpstreamServerError(f"{provider}: {type(exc).__name__}: {message}")


def _not_encodable(exc: BaseException) -> bool:
    """Raised while the body was encoded for the upstream (nested too deeply, a value JSON cannot hold): the
    request's problem, nothing the upstream did."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RecursionError) or (
                isinstance(current, TypeError | ValueError) and "serializ" in str(current).lower()):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> dict[str, Any]:
    """A few facts for a debug log line about the original exception."""
    return {"type": f"{type(exc).__module__}.{type(exc).__name__}", "status": _status(exc)}
