"""Hot counters (rate limits, budgets, cooldowns, revocations): in memory on one machine, Redis for a fleet.

One small async interface; callers do not know which is behind it. Windows are fixed: a key expires
``ttl`` seconds after its first write. Redis failures raise :class:`CountersUnavailable` quickly (short
socket timeouts), so each caller decides whether to fail open or closed.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class CountersUnavailable(Exception):
    """The shared counter store cannot be reached."""


class Counters(Protocol):
    backend: str

    async def add(self, key: str, amount: float, ttl: float) -> float: ...

    async def get_many(self, keys: list[str]) -> list[float]: ...

    async def put(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def fetch(self, key: str) -> str | None: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryCounters:
    """Process-local counters: the embedded default. Not shared between replicas."""

    backend = "memory"

    def __init__(self) -> None:
        self._values: dict[str, tuple[Any, float | None]] = {}
        self._writes = 0

    def _live(self, key: str) -> Any:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._values[key]
            return None
        return value

    def _sweep(self) -> None:
        self._writes += 1
        if self._writes % 10_000 == 0:
            now = time.monotonic()
            for key in [k for k, (_, exp) in self._values.items() if exp is not None and exp <= now]:
                del self._values[key]

    async def add(self, key: str, amount: float, ttl: float) -> float:
        current = self._live(key)
        if current is None:
            value = float(amount)
            self._values[key] = (value, time.monotonic() + ttl)
        else:
            value = float(current) + amount
            self._values[key] = (value, self._values[key][1])
        self._sweep()
        return value

    async def get_many(self, keys: list[str]) -> list[float]:
        return [float(self._live(key) or 0.0) for key in keys]

    async def put(self, key: str, value: str, ttl: float | None = None) -> None:
        self._values[key] = (value, time.monotonic() + ttl if ttl else None)
        self._sweep()

    async def fetch(self, key: str) -> str | None:
        value = self._live(key)
        return None if value is None else str(value)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


# Add to a counter and start its window on the first write, atomically.
_ADD_SCRIPT = """
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""


class RedisCounters:
    """Counters shared by every replica pointed at the same Redis."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = "agent-router:", timeout: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self._redis = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                        health_check_interval=15, decode_responses=True)
        self._add = self._redis.register_script(_ADD_SCRIPT)

    async def _call(self, coro: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            raise CountersUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def add(self, key: str, amount: float, ttl: float) -> float:
        value = await self._call(self._add(keys=[self.prefix + key], args=[amount, max(1, int(ttl * 1000))]))
        return float(value)

    async def get_many(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        values = await self._call(self._redis.mget([self.prefix + key for key in keys]))
        return [float(v) if v is not None else 0.0 for v in values]

    async def put(self, key: str, value: str, ttl: float | None = None) -> None:
        px = max(1, int(ttl * 1000)) if ttl else None
        await self._call(self._redis.set(self.prefix + key, value, px=px))

    async def fetch(self, key: str) -> str | None:
        value = await self._call(self._redis.get(self.prefix + key))
        return None if value is None else str(value)

    async def delete(self, key: str) -> None:
        await self._call(self._redis.delete(self.prefix + key))

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except Exception:
            pass


def build_counters(redis_url: str | None, prefix: str = "agent-router:") -> Counters:
    return RedisCounters(redis_url, prefix) if redis_url else MemoryCounters()
