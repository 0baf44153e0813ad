"""Provider-reported usage, read defensively: an upstream's numbers are accepted only when they are possible.

Ledger rows, token windows and budgets all start from ``ctx.usage``. A report is kept only when the counts read
from it (``prompt_tokens``, ``completion_tokens`` and, if given, ``prompt_tokens_details.cached_tokens``) are whole
numbers between 0 and :data:`MAX_TOKENS`. Anything else (strings, nested garbage, negatives, NaN, infinities,
absurd sizes, a missing count) is treated as *no report*: the ledger then counts the answer's tokens itself and
flags the record ``estimated``, and a negative or absurd number never reaches a budget. A stream's usage chunk
that is not even JSON is left to the stream filter, never an internal error.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from router.context import RequestContext

log = logging.getLogger("agent_router.ledger")

MAX_TOKENS = 100_000_000
"""More tokens than this in one request (50 times the largest context window on sale) is not a real count."""

_USAGE_MARKERS = (b'"usage":{', b'"usage": {')


def valid_count(value: Any) -> bool:
    """A whole number of tokens in ``[0, MAX_TOKENS]`` (``12.0`` counts; ``True``, ``"12"`` and ``1e400`` do not)."""
    if type(value) is int:
        return 0 <= value <= MAX_TOKENS
    return type(value) is float and math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_TOKENS


def plausible(usage: Any) -> bool:
    """Whether a usage report holds only possible numbers where the router reads them."""
    if not isinstance(usage, dict):
        return False
    if not (valid_count(usage.get("prompt_tokens")) and valid_count(usage.get("completion_tokens"))):
        return False
    details = usage.get("prompt_tokens_details")
    if details is None:
        return True
    if not isinstance(details, dict):
        return False
    cached = details.get("cached_tokens")
    return cached is None or valid_count(cached)


def reported_usage(ctx: RequestContext, usage: Any) -> dict[str, Any] | None:
    """``usage`` when it is plausible; else None (logged), so the request's tokens are estimated and flagged."""
    if usage is None or plausible(usage):
        return usage  # type: ignore[no-any-return]
    log.warning("request %s: the upstream reported impossible usage; its tokens will be estimated instead",
                ctx.request_id)
    return None


def take_stream_usage(ctx: RequestContext, payload: bytes) -> bool:
    """Record a stream's usage chunk in ``ctx.usage``; return True when the chunk must be hidden from the client.

    The latest report wins, an impossible one included (it leaves the usage unknown)."""
    if b'"usage"' not in payload or not any(marker in payload for marker in _USAGE_MARKERS):
        return False
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(chunk, dict):
        return False
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        ctx.usage = reported_usage(ctx, usage)
    return not ctx.client_wants_usage and not chunk.get("choices")
