"""A request whose state is only valid at one deployment (``ctx.pinned_deployment``), for any other deployment.

Responses' encrypted reasoning items are sealed by the provider that made them; another one answers 400 for them.
The pinned deployment is tried first (see :mod:`router.session_affinity`); a fallback gets the request without them,
and without the ids of the model's own items (messages, calls): OpenAI refuses an item id whose reasoning item is
missing, and another provider's ids mean nothing to it anyway. ``call_id`` stays: it pairs calls with outputs.
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
    if isinstance(items, list) and any(_is_sealed(item) for item in items):
        kept = [_without_id(item) for item in items if not _is_sealed(item)]
        body = {**payload, "input": kept}
    ctx.translated[key] = body
    return body


def _without_id(item: Any) -> Any:
    """A model-made item (an assistant message, a call) without its provider-issued ``id``."""
    if not isinstance(item, dict) or "id" not in item:
        return item
    kind = item.get("type")
    made_by_model = (kind in (None, "message") and item.get("role") == "assistant") or (
        isinstance(kind, str) and kind.endswith("_call"))
    if not made_by_model:
        return item
    return {key: value for key, value in item.items() if key != "id"}
