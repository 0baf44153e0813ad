"""Tracks whether the shared counter store is reachable: logs once per outage, probes until it is back.

While it is down, admission does not wait on it request after request; a background probe pings it every
``probe_interval`` seconds and the limits resume as soon as it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from router.store.counters import Counters, CountersUnavailable

log = logging.getLogger("agent_router.limits")


class CounterOutage:
    def __init__(self, counters: Counters, policy: str, probe_interval: float = 1.0) -> None:
        self.counters = counters
        self.policy = policy
        """What the limits do meanwhile, for the log and /readyz ('rate limits fail open, budgets ...')."""
        self.probe_interval = probe_interval
        self.reason: str | None = None
        self.since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.reason is not None

    def failed(self, exc: BaseException) -> None:
        if self.reason is not None:
            return
        self.reason, self.since = str(exc) or type(exc).__name__, time.time()
        log.error("limits: the shared counter store is unreachable (%s); %s until it is back", self.reason,
                  self.policy)
        with contextlib.suppress(RuntimeError):  # no running loop: the next admission retries instead
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_return())

    def recovered(self) -> None:
        if self.reason is None:
            return
        elapsed = time.time() - (self.since or time.time())
        self.reason = self.since = None
        log.warning("limits: the shared counter store is reachable again after %.1fs; limits enforced again",
                    elapsed)

    async def _wait_for_return(self) -> None:
        while self.down:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.counters.ping()
            except CountersUnavailable:
                continue
            self.recovered()

    def health(self) -> str:
        if self.reason is None:
            return f"ok ({self.counters.backend})"
        since = time.strftime("%H:%M:%SZ", time.gmtime(self.since or 0))
        return f"degraded: redis unreachable ({self.reason}) since {since}; {self.policy}"

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe
