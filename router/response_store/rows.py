"""A stored response: as the router keeps it (JSON text, encoded once) and as callers read it (decoded).

The JSON is encoded when the response is kept, so later changes to the caller's dicts never reach the store,
and every value is one both SQLite and PostgreSQL accept: orjson escapes NUL and control characters; values
orjson refuses (a lone surrogate, an integer beyond 64 bits) fall back to the standard library's ASCII-only
encoder, whose escapes both decoders read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

MAX_ID_CHARS = 256
"""Longer response ids are not stored (and never looked up): ids are minted by upstreams or the router."""


def plain_id(value: object) -> bool:
    """Whether ``value`` can be a stored response's id: a short printable string, stored exactly as it is."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.isprintable()


def encode(value: Any) -> str:
    """JSON text for any decoded JSON value (see the module docstring)."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=True, default=str, separators=(",", ":"))


def decode(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response the router served: the Response object exactly as the client got it, and the input of its own
    turn; ``previous_id`` names the response it continued, whose turns come before it (a chain, so a long
    conversation is stored once, not once per turn)."""

    id: str
    agent: str | None
    response: dict[str, Any]
    input_items: list[Any]
    deployment: str
    provider: str
    created_at: float
    expires_at: float
    previous_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """One response as it is written and cached: its JSON already encoded."""

    id: str
    agent: str | None
    response_json: str
    input_json: str
    deployment: str
    provider: str
    created_at: float
    expires_at: float
    previous_id: str | None = None

    @property
    def size(self) -> int:
        """Characters of JSON it holds (its weight in memory and in the database)."""
        return len(self.response_json) + len(self.input_json)

    def values(self) -> tuple[Any, ...]:
        """The row in :data:`COLUMNS` order."""
        return (self.id, self.agent, self.created_at, self.expires_at, self.deployment, self.provider,
                self.response_json, self.input_json, self.previous_id)

    def decoded(self) -> StoredResponse:
        response = decode(self.response_json)
        items = decode(self.input_json)
        return StoredResponse(self.id, self.agent, response if isinstance(response, dict) else {},
                              items if isinstance(items, list) else [], self.deployment, self.provider,
                              self.created_at, self.expires_at, self.previous_id)


COLUMNS = ("id", "agent", "created_at", "expires_at", "deployment", "provider", "response", "input_items",
           "previous_id")


def row_from_database(values: dict[str, Any]) -> ResponseRow:
    return ResponseRow(values["id"], values["agent"], values["response"], values["input_items"],
                       values["deployment"], values["provider"], float(values["created_at"]),
                       float(values["expires_at"]), values.get("previous_id"))
