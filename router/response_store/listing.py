"""``GET /v1/responses/{id}/input_items``: the stored input as the API lists it, a page at a time.

Listed items are objects with a ``type`` and an ``id`` (the cursor ``after`` names). Input sent in the easy
shape (``{"role": "user", "content": "hi"}``) is listed as the message item it stands for, with its text as
an ``input_text`` part (``output_text`` for an assistant's); an item sent without an id gets a stable one made
from the response id and its position, so paging by ``after`` works across calls.
"""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequest
from router.response_store.rows import StoredResponse

MAX_LIMIT = 100


def listed_item(item: Any, response_id: str, index: int) -> dict[str, Any]:
    listed: dict[str, Any] = dict(item) if isinstance(item, dict) else {"type": "unknown", "value": item}
    if "type" not in listed and "role" in listed:
        listed["type"] = "message"
    if listed.get("type") == "message" and isinstance(listed.get("content"), str):
        part = "output_text" if listed.get("role") == "assistant" else "input_text"
        text_part: dict[str, Any] = {"type": part, "text": listed["content"]}
        if part == "output_text":
            text_part["annotations"] = []
        listed["content"] = [text_part]
    if not isinstance(listed.get("id"), str):
        listed["id"] = f"item_{index}_{response_id}"
    return listed


def input_items_page(stored: StoredResponse, limit: int = 20, order: str = "desc",
                     after: str | None = None) -> dict[str, Any]:
    """One page of ``stored``'s input items (``order``: ``asc`` oldest first, ``desc`` newest first)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_LIMIT}", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'", param="order")
    items = [listed_item(item, stored.id, index) for index, item in enumerate(stored.input_items)]
    if order == "desc":
        items.reverse()
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"no input item with id '{after}' in response '{stored.id}'", param="after")
        start = ids.index(after) + 1
    page = items[start:start + limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": start + limit < len(items)}
