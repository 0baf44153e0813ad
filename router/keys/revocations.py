"""Revocations shared through Redis, so every replica refuses a revoked key on its very next request.

The records database stays the source of truth (each replica reloads it every second); the Redis marker
``revoked-key:<hex>`` closes the gap between a revoke and the next reload. Replicas read it per request for
database keys, and refuse (fail closed) when Redis is configured but cannot answer.
"""

from __future__ import annotations

import time

from router.keys.material import to_epoch
from router.keys.store import KeyRow
from router.store.counters import Counters

_GRACE = 3600.0
"""A marker outlives the key's expiry by this long; after that expiry alone refuses the key."""


def marker(key_hash: str) -> str:
    return "revoked-key:" + key_hash.removeprefix("sha256:")


async def publish(counters: Counters, row: KeyRow) -> None:
    """Raise CountersUnavailable when Redis cannot take it (the database reload still spreads it)."""
    expires = to_epoch(row.expires_at)
    ttl = None if expires is None else max(60.0, expires - time.time() + _GRACE)
    await counters.put(marker(row.key_hash), row.id, ttl)


async def is_revoked(counters: Counters, key_hash: str) -> bool:
    """Raise CountersUnavailable when Redis cannot answer: the caller refuses the request."""
    return await counters.fetch(marker(key_hash)) is not None
