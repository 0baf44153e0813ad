"""Turn an upstream's HTTP status and error body into the router's typed errors.

Shared by every adapter, so a 429 or a context-window error means the same thing whatever sent it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from router.errors import (
    ContentRefused,
    ContextWindowExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from router.redact import PATTERNS_ONLY

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "context length",
    "prompt is too long",
    "too many tokens",
    "input is too long",
    "exceeds the maximum",
    "reduce the length",
)
_REFUSAL_MARKERS = ("content_filter", "content management policy", "content_policy", "safety system", "responsible ai")


def error_message(body: bytes | str | None) -> tuple[str, str]:
    """Return (message, lower-cased searchable text) from an upstream error body of any common shape."""
    if body is None:
        return "", ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message = text[:500]
    try:
        data: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return message, text.lower()
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        message = str(error.get("message") or message)[:500]
    elif isinstance(error, str):
        message = error[:500]
    return message, text.lower()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify(status: int, body: bytes | str | None, headers: Mapping[str, str] | None = None,
             provider: str = "upstream") -> ProviderError:
    message, text = error_message(body)
    message = PATTERNS_ONLY(message)  # a credential echoed by the upstream; the router masks its own keys too
    where = f"{provider} returned {status}"
    detail = f"{where}: {message}" if message else where
    if status == 429:
        return UpstreamRateLimited(detail, retry_after=retry_after_seconds(headers or {}))
    if any(marker in text for marker in _CONTEXT_MARKERS) and status in (400, 413, 422):
        return ContextWindowExceeded(detail, upstream_status=status)
    if any(marker in text for marker in _REFUSAL_MARKERS) and status in (400, 403, 422):
        return ContentRefused(detail, upstream_status=status)
    if status in (401, 403):
        return UpstreamAuthError(detail, upstream_status=status)
    if status == 408:
        return UpstreamTimeout(detail, upstream_status=status)
    if status == 404:
        # The deployment's model or URL does not exist upstream: our config, not the caller's mistake.
        return UpstreamServerError(detail, upstream_status=status, code="upstream_not_found")
    if 400 <= status < 500 and status not in (409, 425):
        return UpstreamBadRequest(detail, upstream_status=status)
    return UpstreamServerError(detail, upstream_status=status)
