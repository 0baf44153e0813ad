"""Readiness pings of the stores: is the records database answering, is Redis?

``/readyz`` must tell the truth within about a second and never wait on a store itself, so the pings run in the
background every ``interval`` seconds, each given ``timeout`` seconds, and the latest outcome is handed to the
parts that report it (the ledger for the database, the limits for Redis). A ping still unanswered is not
repeated (one at a time, so a stuck store never piles up pings); it is reported as unanswered for so long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from router.store.counters import Counters
from router.store.database import Database

Report = Callable[[str | None], None]
"""Told the problem (None: the store answered) after each ping."""

INTERVAL = 1.0
TIMEOUT = 1.0


class _Ping:
    """One store's ping: at most one in flight."""

    def __init__(self, name: str, ping: Callable[[], Coroutine[Any, Any, None]], report: Report) -> None:
        self.name = name
        self.ping = ping
        self.report = report
        self.task: asyncio.Task[None] | None = None
        self.sent = 0.0

    def send(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.ping(), name=f"readiness-ping-{self.name}")
            self.task.add_done_callback(_retrieved)
            self.sent = time.monotonic()

    def settle(self) -> None:
        task = self.task
        if task is None:
            return
        if not task.done():
            self.report(f"{self.name} has not answered a ping for {time.monotonic() - self.sent:.1f}s")
            return
        exc = None if task.cancelled() else task.exception()
        self.report(None if exc is None else f"{self.name} ping failed: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def _retrieved(task: asyncio.Task[None]) -> None:
    """A ping that fails after the probe stopped looking is not an unhandled error."""
    if not task.cancelled():
        task.exception()


class StoreProbe:
    def __init__(self, database: Database, counters: Counters, on_database: Report, on_redis: Report,
                 interval: float = INTERVAL, timeout: float = TIMEOUT) -> None:
        self.interval = interval
        self.timeout = timeout
        self._pings = [_Ping("the records database", lambda: database.run(database.ping), on_database)]
        if counters.backend == "redis":
            self._pings.append(_Ping("redis", counters.ping, on_redis))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="readiness-probe")

    async def check(self) -> None:
        """Ping every store (the ones not still answering the last ping) and report within ``timeout``."""
        for ping in self._pings:
            ping.send()
        waiting = {ping.task for ping in self._pings if ping.task is not None and not ping.task.done()}
        if waiting:
            await asyncio.wait(waiting, timeout=self.timeout)
        for ping in self._pings:
            ping.settle()

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for ping in self._pings:
            await ping.close()
