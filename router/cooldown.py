"""Circuit breaker per deployment, kept in the shared counters so every replica sees the same state.

    closed ──N upstream faults within window──▶ open (skipped for cooldown_seconds)
      ▲                                            │ cooldown passes
      └──── probe succeeds ──── half-open ◀────────┘   (one probe request at a time is let through;
                                   └── probe fails ──▶ open again)

Keys (under the counters' prefix): ``cooldown:fails:<d>`` (fault count, expires with the window),
``cooldown:open:<d>`` (wall time it opened, expires after the cooldown), ``cooldown:tripped:<d>`` (set
while the breaker has not been closed by a success: once ``open`` has expired this means half-open),
``cooldown:probe:<d>`` (claimed by the one probe in flight). Only upstream faults count (see
:func:`router.fallback_policy.is_upstream_fault`). When Redis cannot be reached the breaker keeps working
on process-local memory and logs it; a request never fails because cooldown state is unreachable.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from router.config.schema import CooldownSpec
from router.store.counters import Counters, CountersUnavailable, MemoryCounters

log = logging.getLogger("agent_router.cooldown")

T = TypeVar("T")

# After Redis fails, use local memory for this long before asking Redis again.
SHARED_RETRY_SECONDS = 5.0
# The tripped marker outlives the cooldown by this factor so that half-open is still known afterwards.
TRIPPED_TTL_FACTOR = 20


@functools.lru_cache(maxsize=1024)
def _view_keys(names: tuple[str, ...]) -> list[str]:
    """The keys :meth:`CircuitBreaker.view` reads for a plan (the same few plans come back on every request)."""
    return [key for name in names for key in (f"cooldown:open:{name}", f"cooldown:tripped:{name}")]


@dataclass(frozen=True, slots=True)
class BreakerView:
    """What the breaker says of a plan's deployments, for one request."""

    usable: list[str]
    """Closed or half-open, in plan order."""
    half_open: frozenset[str]
    """Of ``usable``: those whose next attempt is a probe (claimed with :meth:`CircuitBreaker.claim_probe`)."""
    cooling: list[str]
    """Open, least recently failed first."""


class CircuitBreaker:
    def __init__(self, counters: Counters) -> None:
        self.shared = counters
        self.local = counters if isinstance(counters, MemoryCounters) else MemoryCounters()
        self._shared_down_until = 0.0

    @property
    def backend(self) -> str:
        return "memory" if self._store() is self.local else self.shared.backend

    def _store(self) -> Counters:
        return self.local if time.monotonic() < self._shared_down_until else self.shared

    async def _run(self, op: Callable[[Counters], Awaitable[T]]) -> T:
        store = self._store()
        try:
            return await op(store)
        except CountersUnavailable as exc:
            if store is self.local:
                raise
            self._shared_down_until = time.monotonic() + SHARED_RETRY_SECONDS
            log.warning("cooldown state unreachable (%s); using process-local memory for %gs", exc,
                        SHARED_RETRY_SECONDS)
            return await op(self.local)

    async def view(self, names: list[str]) -> BreakerView:
        """One read of the store for the whole plan."""
        keys = _view_keys(tuple(names))
        values = await self._run(lambda store: store.get_many(keys))
        usable: list[str] = []
        half_open: set[str] = set()
        cooling: list[tuple[float, str]] = []
        for i, name in enumerate(names):
            opened, tripped = values[2 * i], values[2 * i + 1]
            if opened > 0:
                cooling.append((opened, name))
                continue
            usable.append(name)
            if tripped > 0:
                half_open.add(name)
        return BreakerView(usable, frozenset(half_open), [name for _, name in sorted(cooling)])

    async def claim_probe(self, name: str, ttl: float) -> bool:
        """Become the one probe of a half-open deployment; False when another request already is.

        The claim expires after ``ttl`` on its own, so a probe that never reports back frees the slot."""
        claimed = await self._run(lambda store: store.add(f"cooldown:probe:{name}", 1, ttl=max(1.0, ttl)))
        return claimed == 1

    async def failed(self, name: str, spec: CooldownSpec, probe: bool = False) -> bool:
        """Count one upstream fault; return True when it (re)opens the breaker."""
        if not probe:
            count = await self._run(lambda store: store.add(f"cooldown:fails:{name}", 1, ttl=spec.window_seconds))
            if count < spec.failures:
                return False
        await self._open(name, spec)
        return True

    async def _open(self, name: str, spec: CooldownSpec) -> None:
        now = str(time.time())

        async def write(store: Counters) -> None:
            await store.put(f"cooldown:open:{name}", now, ttl=spec.cooldown_seconds)
            await store.put(f"cooldown:tripped:{name}", now,
                            ttl=spec.cooldown_seconds * TRIPPED_TTL_FACTOR + spec.window_seconds)
            await store.delete(f"cooldown:fails:{name}")
            await store.delete(f"cooldown:probe:{name}")

        await self._run(write)
        log.warning("deployment %s cooled down for %gs after repeated upstream faults", name, spec.cooldown_seconds)

    async def succeeded(self, name: str) -> None:
        """A probe succeeded: close the breaker."""

        async def write(store: Counters) -> None:
            for key in ("tripped", "fails", "probe"):
                await store.delete(f"cooldown:{key}:{name}")

        await self._run(write)
        log.info("deployment %s answered its probe; cooldown over", name)

    async def state(self, name: str) -> str:
        """'closed', 'open' or 'half-open' (for admin views and tests)."""
        opened, tripped = await self._run(
            lambda store: store.get_many([f"cooldown:open:{name}", f"cooldown:tripped:{name}"]))
        if opened > 0:
            return "open"
        return "half-open" if tripped > 0 else "closed"
