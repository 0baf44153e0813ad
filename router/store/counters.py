"""Hot counters (rate limits, budgets, cooldowns, revocations, freezes): in memory on one machine, Redis for a fleet.

One small async interface; callers do not know which is behind it. Windows are fixed: a key expires
``ttl`` seconds after its first write. Every Redis failure, whatever the client or the event loop raises for it
(a reset can surface as ``ConnectionError``, ``OSError``, a ``RuntimeError`` from uvloop's closed transport, a
timeout), raises :class:`CountersUnavailable`, and quickly: each command has connect and socket timeouts, one
immediate retry on a fresh connection (a pooled connection may have been reset while idle), and a bound on the
whole call. So each caller decides whether to fail open or closed, and none ever sees another error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol


class CountersUnavailable(Exception):
    """The shared counter store cannot be reached."""


class Gate(NamedTuple):
    """One cap checked by :meth:`Counters.take`: refuse when ``key`` is already at ``limit``, else add ``amount``."""

    key: str
    amount: float
    limit: float
    ttl: float


class Refusal(NamedTuple):
    """Which gate refused (its position), the counter's value, and seconds until that counter expires (-1: none)."""

    gate: int
    value: float
    ttl: float


class Counters(Protocol):
    backend: str

    async def add(self, key: str, amount: float, ttl: float) -> float: ...

    async def add_many(self, keys: Sequence[str], amounts: Sequence[float], ttl: float) -> list[float]:
        """Add to several counters at once (one round trip), each starting its window on its first write."""
        ...

    async def take(self, gates: Sequence[Gate]) -> Refusal | None: ...

    async def get_many(self, keys: list[str]) -> list[float]: ...

    async def put(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def fetch(self, key: str) -> str | None: ...

    async def delete(self, key: str) -> None: ...

    async def put_field(self, key: str, field: str, value: str) -> None:
        """Set one field of a map (no expiry): concurrent writers of different fields never overwrite each other."""
        ...

    async def delete_field(self, key: str, field: str) -> None: ...

    async def fetch_fields(self, key: str) -> dict[str, str]:
        """Every field of a map, in one round trip ({} when there is none)."""
        ...

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

    async def add_many(self, keys: Sequence[str], amounts: Sequence[float], ttl: float) -> list[float]:
        return [await self.add(key, amount, ttl) for key, amount in zip(keys, amounts, strict=True)]

    async def take(self, gates: Sequence[Gate]) -> Refusal | None:
        """Check every gate, then add to all of them or to none (atomic: no await in between)."""
        for index, gate in enumerate(gates):
            value = float(self._live(gate.key) or 0.0)
            if value >= gate.limit:
                entry = self._values.get(gate.key)
                expires = entry[1] if entry is not None else None
                return Refusal(index, value, -1.0 if expires is None else max(0.0, expires - time.monotonic()))
        for gate in gates:
            if gate.amount > 0:
                await self.add(gate.key, gate.amount, gate.ttl)
        return None

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

    async def put_field(self, key: str, field: str, value: str) -> None:
        fields = self._live(key)
        self._values[key] = ({**(fields if isinstance(fields, dict) else {}), field: value}, None)

    async def delete_field(self, key: str, field: str) -> None:
        fields = self._live(key)
        if isinstance(fields, dict):
            self._values[key] = ({k: v for k, v in fields.items() if k != field}, None)

    async def fetch_fields(self, key: str) -> dict[str, str]:
        fields = self._live(key)
        return dict(fields) if isinstance(fields, dict) else {}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


CALL_BOUND_FACTOR = 4
"""A whole call (a script may take a reconnect, EVALSHA, SCRIPT LOAD and EVAL) is bounded by this many socket
timeouts."""

# Add to a counter and start its window on the first write, atomically.
_ADD_SCRIPT = """
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# The same over several counters in one round trip. KEYS: the counters; ARGV: ttl_ms, then one amount per key.
_ADD_MANY_SCRIPT = """
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = redis.call('INCRBYFLOAT', key, ARGV[i + 1])
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return values
"""

# All or nothing over several caps in one round trip. KEYS: the counters; ARGV: amount, limit, ttl_ms per key.
# Returns {} when every gate passed (and was added to), else {index (1-based), value, pttl} of the first refusal.
_TAKE_SCRIPT = """
for i, key in ipairs(KEYS) do
  local value = tonumber(redis.call('GET', key) or '0')
  if value >= tonumber(ARGV[3 * i - 1]) then
    return {i, tostring(value), redis.call('PTTL', key)}
  end
end
for i, key in ipairs(KEYS) do
  if tonumber(ARGV[3 * i - 2]) > 0 then
    redis.call('INCRBYFLOAT', key, ARGV[3 * i - 2])
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[3 * i]) end
  end
end
return {}
"""


class RedisCounters:
    """Counters shared by every replica pointed at the same Redis."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = "agent-router:", timeout: float = 0.5) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.prefix = prefix
        self.timeout = timeout
        self._bound = CALL_BOUND_FACTOR * timeout
        # redis-py's default Retry (3 attempts, exponential backoff) made a blackholed ping take ~9 s at 0.5 s.
        self._redis = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                        socket_keepalive=True, health_check_interval=15, decode_responses=True,
                                        retry=Retry(NoBackoff(), 1))
        self._add = self._redis.register_script(_ADD_SCRIPT)
        self._take = self._redis.register_script(_TAKE_SCRIPT)
        self._add_many = self._redis.register_script(_ADD_MANY_SCRIPT)

    async def _call(self, coro: Any) -> Any:
        """Await a Redis command; any failure of it is :class:`CountersUnavailable` (cancellation passes)."""
        try:
            async with asyncio.timeout(self._bound):
                return await coro
        except Exception as exc:  # the store's errors have no closed list (see the module's docstring)
            raise CountersUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def add(self, key: str, amount: float, ttl: float) -> float:
        value = await self._call(self._add(keys=[self.prefix + key], args=[amount, max(1, int(ttl * 1000))]))
        return float(value)

    async def add_many(self, keys: Sequence[str], amounts: Sequence[float], ttl: float) -> list[float]:
        args: list[float | int] = [max(1, int(ttl * 1000)), *amounts]
        values = await self._call(self._add_many(keys=[self.prefix + key for key in keys], args=args))
        return [float(v) for v in values]

    async def take(self, gates: Sequence[Gate]) -> Refusal | None:
        """Check and add in one atomic script, so replicas cannot all slip under a cap at once."""
        if not gates:
            return None
        args: list[float | int] = []
        for gate in gates:
            args += [gate.amount, gate.limit, max(1, int(gate.ttl * 1000))]
        reply = await self._call(self._take(keys=[self.prefix + gate.key for gate in gates], args=args))
        if not reply:
            return None
        index, value, pttl = reply
        return Refusal(int(index) - 1, float(value), -1.0 if int(pttl) < 0 else int(pttl) / 1000)

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

    async def put_field(self, key: str, field: str, value: str) -> None:
        await self._call(self._redis.hset(self.prefix + key, field, value))

    async def delete_field(self, key: str, field: str) -> None:
        await self._call(self._redis.hdel(self.prefix + key, field))

    async def fetch_fields(self, key: str) -> dict[str, str]:
        fields = await self._call(self._redis.hgetall(self.prefix + key))
        return {str(k): str(v) for k, v in fields.items()}

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except Exception:
            pass


def build_counters(redis_url: str | None, prefix: str = "agent-router:", timeout: float = 0.5) -> Counters:
    return RedisCounters(redis_url, prefix, timeout) if redis_url else MemoryCounters()
