"""A request whose state is only valid at one deployment (``ctx.pinned_deployment``), for any other deployment.

Responses' encrypted reasoning items are sealed by the provider that made them; another one answers 400 for them.
The pinned deployment is tried first (see :mod:`router.session_affinity`); a fallback gets the request without them.
"""

from __future__ import annotations

from typing import Any

from router.context import RequestContext

_KEY = "unpinned"


def _is_sealed(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "reasoning" and bool(item.get("encrypted_content"))


def has_sealed_state(payload: dict[str, Any]) -> bool:
    items = payload.get("input")
    return isinstance(items, list) and any(_is_sealed(item) for item in items)


def unpinned(ctx: RequestContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` without the items only the pinned deployment can read (built once per request and format)."""
    key = f"{_KEY}:{id(payload)}"
    cached = ctx.translated.get(key)
    if cached is not None:
        return cached
    items = payload.get("input")
    body = payload
    if isinstance(items, list):
        kept = [item for item in items if not _is_sealed(item)]
        if len(kept) != len(items):
            body = {**payload, "input": kept}
    ctx.translated[key] = body
    return body
