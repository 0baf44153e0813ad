"""Reading a router's circuit breakers from a test, in memory or on the real Redis under a prefix of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from router.cooldown import CircuitBreaker
from router.store.counters import RedisCounters
from tests.backing_services import REDIS_URL, redis_prefix


def counters_backend(kind: str) -> Iterator[dict[str, str]]:
    """The router settings for ``kind`` ('memory' or 'redis'); a Redis prefix is cleaned up afterwards."""
    if kind == "memory":
        yield {}
        return
    with redis_prefix() as prefix:
        yield {"redis_url": REDIS_URL, "redis_prefix": prefix}


def breaker_state(router: Any, backend: dict[str, str], name: str) -> str:
    """What the breaker says of ``name``: the router's own state in memory, a reader of the same keys in Redis."""
    if not backend:
        return asyncio.run(router.state.executor.breaker.state(name))

    async def read() -> str:
        counters = RedisCounters(backend["redis_url"], backend["redis_prefix"])
        try:
            return await CircuitBreaker(counters).state(name)
        finally:
            await counters.close()

    return asyncio.run(read())
