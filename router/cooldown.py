"""Circuit breaker per deployment, kept in the shared counters so every replica sees the same state.

    closed ──faults / attempts ≥ ratio within window──▶ open (skipped for cooldown_seconds)
      ▲                                                   │ cooldown passes
      └──── probe succeeds ──── half-open ◀───────────────┘   (one probe request at a time is let through;
                                   └── probe fails ──▶ open again)

It opens on a failure *ratio* (``failure_ratio`` of at least ``min_requests`` attempts, and never fewer than
``failures`` faults: :func:`opens`), so a busy deployment with a few errors stays in service. When every
deployment of a plan is open, the executor tries them anyway: those attempts are probes too, and a success
closes the breaker at once.

Keys (under the counters' prefix): ``cooldown:fails:<d>`` and ``cooldown:attempts:<d>`` (the window's
counts, written together so that they expire together), ``cooldown:open:<d>`` (wall time it opened, expires
after the cooldown), ``cooldown:tripped:<d>`` (set while the breaker has not been closed by a success: once
``open`` has expired this means half-open), ``cooldown:probe:<d>`` (claimed by the one probe in flight).

Attempts answered without a fault are counted in process memory and added to the shared count with the next
fault (one round trip that the fault costs anyway) or after ``FLUSH_SECONDS``; a request that succeeds
never waits on the store for it but once a second per deployment. Only upstream faults count (see
:func:`router.fallback_policy.is_upstream_fault`). When Redis cannot be reached the breaker keeps working
on process-local memory and logs it; a request never fails because cooldown state is unreachable. Lines
about one deployment's breaker are logged at most once per ``LOG_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from router.config.schema import CooldownSpec
from router.log_throttle import LogThrottle, held_note
from router.store.counters import Counters, CountersUnavailable, MemoryCounters

log = logging.getLogger("agent_router.cooldown")

T = TypeVar("T")

# After Redis fails, use local memory for this long before asking Redis again.
SHARED_RETRY_SECONDS = 5.0
# Attempts answered without a fault reach the shared count with the next fault, or after this long at most.
FLUSH_SECONDS = 1.0
# Repeated lines about one deployment's breaker: at most one per this many seconds.
LOG_INTERVAL_SECONDS = 10.0
# The tripped marker outlives the cooldown by this factor so that half-open is still known afterwards.
TRIPPED_TTL_FACTOR = 20


def opens(spec: CooldownSpec, faults: float, attempts: float) -> bool:
    """Whether ``faults`` upstream faults out of ``attempts`` within one window open the breaker: enough
    attempts to judge by, a large enough share of faults, and never fewer faults than ``spec.failures``."""
    return faults >= spec.failures and attempts >= spec.min_requests and faults >= spec.failure_ratio * attempts


@functools.lru_cache(maxsize=1024)
def _window_keys(name: str) -> tuple[str, str]:
    """The window's fault and attempt counters, always written together so that they expire together."""
    return f"cooldown:fails:{name}", f"cooldown:attempts:{name}"


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
        self._unsent: dict[str, int] = {}
        """Attempts answered without a fault since they were last added to the shared count, per deployment."""
        self._sent_at: dict[str, float] = {}
        self._log = LogThrottle(LOG_INTERVAL_SECONDS)

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

    def answered(self, name: str) -> int:
        """Count one attempt the upstream answered without a fault, in local memory (no I/O: the hot path).

        Returns how many such attempts are due to be added to the shared count now with :meth:`send_answered`
        (0: none yet). They are sent along with the next fault anyway, and at least every ``FLUSH_SECONDS``
        so that the other replicas' ratios see them."""
        unsent = self._unsent.get(name, 0) + 1
        now = time.monotonic()
        if now - self._sent_at.setdefault(name, now) < FLUSH_SECONDS:
            self._unsent[name] = unsent
            return 0
        self._unsent[name] = 0
        self._sent_at[name] = now
        return unsent

    async def send_answered(self, name: str, count: int, spec: CooldownSpec) -> None:
        """Add ``count`` answered attempts to the window's shared count (see :meth:`answered`)."""
        keys = _window_keys(name)
        await self._run(lambda store: store.add_many(keys, (0.0, float(count)), ttl=spec.window_seconds))

    async def failed(self, name: str, spec: CooldownSpec, probe: bool = False, counted: bool = False) -> bool:
        """Count one upstream fault; return True when it (re)opens the breaker.

        A failed probe reopens at once. Otherwise the fault and the attempts answered here since the last send
        are added in one round trip, and the breaker opens when the window's ratio says so (:func:`opens`).
        ``counted``: the attempt was already counted as answered (a stream that failed after its first event)."""
        if probe:
            await self._open(name, spec)
            return True
        attempts = self._unsent.pop(name, 0) + (0 if counted else 1)
        self._sent_at[name] = time.monotonic()
        keys = _window_keys(name)
        faults, total = await self._run(
            lambda store: store.add_many(keys, (1.0, float(attempts)), ttl=spec.window_seconds))
        if not opens(spec, faults, total):
            return False
        await self._open(name, spec)
        return True

    async def _open(self, name: str, spec: CooldownSpec) -> None:
        now = str(time.time())

        async def write(store: Counters) -> None:
            await store.put(f"cooldown:open:{name}", now, ttl=spec.cooldown_seconds)
            await store.put(f"cooldown:tripped:{name}", now,
                            ttl=spec.cooldown_seconds * TRIPPED_TTL_FACTOR + spec.window_seconds)
            for key in ("fails", "attempts", "probe"):
                await store.delete(f"cooldown:{key}:{name}")

        self._unsent.pop(name, None)
        await self._run(write)
        held = self._log.allow(f"open:{name}")
        if held is not None:
            log.warning("deployment %s cooled down for %gs after repeated upstream faults%s", name,
                        spec.cooldown_seconds, held_note(held))

    async def succeeded(self, name: str) -> None:
        """A probe succeeded: close the breaker, also while it is still open (every deployment of a plan was
        cooling down and this one was tried anyway), so that later requests are not probes."""

        async def write(store: Counters) -> None:
            for key in ("open", "tripped", "fails", "attempts", "probe"):
                await store.delete(f"cooldown:{key}:{name}")

        self._unsent.pop(name, None)
        await self._run(write)
        held = self._log.allow(f"closed:{name}")
        if held is not None:
            log.info("deployment %s answered its probe; cooldown over%s", name, held_note(held))

    async def release_probe(self, name: str) -> None:
        """Give the probe slot back without a verdict: the attempt never reached the upstream."""
        await self._run(lambda store: store.delete(f"cooldown:probe:{name}"))

    async def state(self, name: str) -> str:
        """'closed', 'open' or 'half-open' (for admin views and tests)."""
        opened, tripped = await self._run(
            lambda store: store.get_many([f"cooldown:open:{name}", f"cooldown:tripped:{name}"]))
        if opened > 0:
            return "open"
        return "half-open" if tripped > 0 else "closed"
